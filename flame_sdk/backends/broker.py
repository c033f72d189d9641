"""The protocol shared by the broker backends: discovery, heartbeats, liveness and chunked sends.

A subclass only moves frames: `_open/_close_transport` manage the connection, `_subscribe/
_unsubscribe` make one scope reachable, `_publish` sends one frame to an end (or to every end of
the other role when `target` is None) and `_on_frame` is fed every frame received for a scope.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import random
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from flame_common.logs import get_logger
from flame_sdk.backends.base import Backend, Scope
from flame_sdk.backends.chunking import (
    DEFAULT_MAX_MESSAGE,
    Parts,
    Reassembler,
    payload_size,
    split_parts,
)
from flame_sdk.backends.dispatch import Dispatcher, Event, EventKind
from flame_sdk.backends.frames import FrameError, Header, Kind, decode

log = get_logger(__name__)

ScopeKey = tuple[str, str]  # (channel, group)


@dataclass
class _ScopeState:
    scope: Scope
    reassembler: Reassembler
    peers: dict[str, float] = field(default_factory=dict)  # end id -> liveness deadline
    beating: asyncio.Task[None] | None = None


class BrokerBackend(Backend):
    """Everything above raw frame transport; one instance per (process, backend sort)."""

    def __init__(
        self,
        job_id: str,
        end_id: str,
        *,
        chunk_size: int,
        send_window: int,
        heartbeat_interval: float,
        liveness_timeout: float,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        super().__init__()
        if chunk_size < 1 or send_window < 1:
            raise ValueError("chunk_size and send_window must be positive")
        if not 0 < heartbeat_interval < liveness_timeout:
            raise ValueError("need 0 < heartbeat_interval < liveness_timeout")
        self.job_id, self.end_id = job_id, end_id
        self.chunk_size, self.send_window = chunk_size, send_window
        self.heartbeat_interval, self.liveness_timeout = heartbeat_interval, liveness_timeout
        self.max_message_bytes = max_message_bytes
        self._states: dict[ScopeKey, _ScopeState] = {}
        self._dispatcher = Dispatcher(self)
        self._ids = itertools.count(random.getrandbits(48))
        self._send_locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._connected = False

    # -- transport hooks ------------------------------------------------------------------
    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close_transport(self) -> None: ...

    @abc.abstractmethod
    async def _subscribe(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def _unsubscribe(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def _publish(self, scope: Scope, target: str | None, frame: bytes) -> None: ...

    # -- Backend --------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._connect_lock:
            if self._connected:
                return
            await self._open()
            self._dispatcher.start()
            self._ticker = asyncio.create_task(self._tick(), name=f"flame-{self.sort}-liveness")
            self._connected = True

    async def join(self, scope: Scope) -> None:
        self._check_scope(scope)
        await self.connect()
        key = (scope.channel, scope.group)
        current = self._states.get(key)
        if current is not None:
            if current.scope != scope:
                raise ValueError(f"already joined channel {scope.channel!r} group {scope.group!r}")
            return
        self._states[key] = _ScopeState(scope, Reassembler(self.max_message_bytes))
        try:
            await self._subscribe(scope)
            await self._control(scope, Kind.JOIN)
        except BaseException:
            self._states.pop(key, None)
            raise

    async def leave(self, scope: Scope) -> None:
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            return
        del self._states[(scope.channel, scope.group)]
        if state.beating is not None:
            state.beating.cancel()
        try:
            await self._control(scope, Kind.LEAVE)
            await self._unsubscribe(scope)
        except Exception as exc:
            log.warning("leave incomplete", channel=scope.channel, error=repr(exc))

    async def send(self, scope: Scope, end_id: str, data: Parts) -> None:
        await self._send_data(scope, end_id, data)

    async def broadcast(self, scope: Scope, data: Parts) -> None:
        await self._send_data(scope, None, data)

    async def close(self) -> None:
        if not self._connected:
            return
        for state in list(self._states.values()):
            await self.leave(state.scope)
        await self._shutdown()
        await self._close_transport()

    async def kill(self) -> None:
        """Test hook simulating a crash: drop the connection without announcing departure."""
        self._states.clear()
        await self._shutdown()
        await self._close_transport()

    # -- receiving ------------------------------------------------------------------------
    def _on_frame(self, scope: Scope, body: bytes) -> None:
        """Handle one frame received for `scope`; bad or foreign frames are logged and dropped."""
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            return
        try:
            header, payload = decode(body)
            _check_origin(scope, header)
        except FrameError as exc:
            log.warning("frame dropped", reason=str(exc), channel=scope.channel, end=scope.end_id)
            return
        peer = header.sender
        if peer == scope.end_id:
            return
        if header.kind is Kind.LEAVE:
            if peer in state.peers:
                self._drop_peer(state, peer)
            return
        discovered = peer not in state.peers
        state.peers[peer] = time.monotonic() + self.liveness_timeout
        if discovered:
            self._dispatcher.post(Event(EventKind.JOIN, scope, peer))
        if header.kind is Kind.JOIN:
            self._spawn(self._control(scope, Kind.HELLO, peer))
        elif header.kind is Kind.DATA:
            try:
                data = state.reassembler.add(header, payload)
            except FrameError as exc:
                log.warning("message dropped", reason=str(exc), channel=scope.channel, peer=peer)
                return
            if data is not None:
                self._dispatcher.post(Event(EventKind.MESSAGE, scope, peer, data))

    def _on_peer_offline(self, end_id: str, grace: float) -> None:
        """A peer is known to be gone: let it expire within `grace` seconds in every scope."""
        deadline = time.monotonic() + grace
        for state in self._states.values():
            if end_id in state.peers:
                state.peers[end_id] = min(state.peers[end_id], deadline)

    def _drop_peer(self, state: _ScopeState, peer: str) -> None:
        del state.peers[peer]
        state.reassembler.forget(peer)
        self._dispatcher.post(Event(EventKind.LEAVE, state.scope, peer))

    # -- sending --------------------------------------------------------------------------
    async def _send_data(self, scope: Scope, target: str | None, data: Parts) -> None:
        self._check_scope(scope)
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            raise RuntimeError(f"channel {scope.channel!r} group {scope.group!r} is not joined")
        size = payload_size(data)
        if size > self.max_message_bytes:
            raise ValueError(f"message of {size} bytes exceeds {self.max_message_bytes}")
        chunks = split_parts(data, self.chunk_size)
        message_id = next(self._ids) & 0xFFFF_FFFF_FFFF_FFFF
        lock = self._send_locks.setdefault((scope.channel, scope.group, target), asyncio.Lock())
        async with lock:
            pending: deque[asyncio.Task[None]] = deque()
            try:
                for index, chunk in enumerate(chunks):
                    header = _header(scope, Kind.DATA, message_id, index, len(chunks), size)
                    frame = b"".join([header.encode(), *chunk])
                    pending.append(asyncio.create_task(self._publish(scope, target, frame)))
                    if len(pending) >= self.send_window:
                        await pending.popleft()
                while pending:
                    await pending.popleft()
            finally:
                for task in pending:
                    task.cancel()

    async def _control(self, scope: Scope, kind: Kind, target: str | None = None) -> None:
        await self._publish(scope, target, _header(scope, kind).encode())

    # -- liveness -------------------------------------------------------------------------
    async def _tick(self) -> None:
        """Send heartbeats and expire silent peers; a stalled loop postpones judgement."""
        interval = self.heartbeat_interval
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            stall = now - last - interval
            last = now
            for state in list(self._states.values()):
                if stall > interval:
                    for peer in state.peers:
                        state.peers[peer] += stall
                else:
                    for peer in [p for p, d in state.peers.items() if d < now]:
                        log.info("peer timed out", channel=state.scope.channel, peer=peer)
                        self._drop_peer(state, peer)
                if state.beating is None or state.beating.done():
                    state.beating = self._spawn(self._beat(state.scope))

    async def _beat(self, scope: Scope) -> None:
        try:
            await self._control(scope, Kind.BEAT)
        except Exception as exc:
            log.warning("heartbeat failed", channel=scope.channel, error=repr(exc))

    # -- helpers --------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("backend task failed", error=repr(task.exception()))

    async def _shutdown(self) -> None:
        tasks = [t for t in (self._ticker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._ticker = None
        await self._dispatcher.stop()
        self._connected = False

    def _check_scope(self, scope: Scope) -> None:
        if scope.job_id != self.job_id or scope.end_id != self.end_id:
            raise ValueError(
                f"scope {scope} does not belong to this backend (job {self.job_id!r}, "
                f"end {self.end_id!r})"
            )


def _header(
    scope: Scope, kind: Kind, message_id: int = 0, index: int = 0, count: int = 1, total: int = 0
) -> Header:
    return Header(
        kind, scope.job_id, scope.channel, scope.group, scope.me, scope.end_id,
        message_id, index, count, total,
    )  # fmt: skip


def _check_origin(scope: Scope, header: Header) -> None:
    if (header.job_id, header.channel, header.group) != (scope.job_id, scope.channel, scope.group):
        raise FrameError(
            f"foreign frame for job {header.job_id!r} channel {header.channel!r} "
            f"group {header.group!r}"
        )
    if header.role != scope.other:
        raise FrameError(f"frame from role {header.role!r}, expected {scope.other!r}")
