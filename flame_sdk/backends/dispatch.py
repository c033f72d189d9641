"""Hands a backend's received events to its bound handlers one at a time, in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import Enum

from flame_common.logs import get_logger
from flame_sdk.backends.base import Backend, Scope

log = get_logger(__name__)


class EventKind(Enum):
    JOIN = "join"
    LEAVE = "leave"
    MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    scope: Scope
    peer: str
    data: bytes | bytearray = b""


class Dispatcher:
    """One FIFO inbox per backend and one task draining it into `on_join/on_leave/on_message`.

    `post` may be called from any thread; handler failures are logged, never propagated, so a
    faulty handler cannot stop the delivery of later events.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(
            self._run(), name=f"flame-{self._backend.sort}-dispatch"
        )

    def post(self, event: Event) -> None:
        loop = self._loop
        if loop is None or not self.running:
            log.debug("backend event dropped: dispatcher not running", kind=event.kind.value)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._queue.put_nowait(event)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def stop(self) -> None:
        """Stop delivering; events still queued are discarded."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _run(self) -> None:
        while True:
            await self._deliver(await self._queue.get())

    async def _deliver(self, event: Event) -> None:
        b = self._backend
        try:
            if event.kind is EventKind.MESSAGE:
                if b.on_message is not None:
                    await b.on_message(event.scope, event.peer, event.data)
            elif event.kind is EventKind.JOIN:
                if b.on_join is not None:
                    await b.on_join(event.scope, event.peer)
            elif b.on_leave is not None:
                await b.on_leave(event.scope, event.peer)
        except Exception:
            log.exception(
                "backend handler failed",
                kind=event.kind.value,
                channel=event.scope.channel,
                peer=event.peer,
            )
