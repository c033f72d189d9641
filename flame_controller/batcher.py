"""Micro-batching of consumed events: many in-flight deliveries become one write per job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from schemas.events import EventBase

Handle = Callable[[str, Sequence[EventBase]], Awaitable[None]]


class EventBatcher:
    """`submit` returns once its batch is persisted (so the broker ack follows the write)."""

    def __init__(self, handle: Handle, max_batch: int = 250) -> None:
        self.handle = handle
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[EventBase, asyncio.Future[None]]] = asyncio.Queue()

    async def submit(self, event: EventBase) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, future))
        await future

    async def run(self) -> None:
        while True:
            items = [await self._queue.get()]
            await asyncio.sleep(0)  # let deliveries already read from the socket join the batch
            while not self._queue.empty() and len(items) < self.max_batch:
                items.append(self._queue.get_nowait())
            groups: dict[str, list[tuple[EventBase, asyncio.Future[None]]]] = {}
            for item in items:
                groups.setdefault(item[0].job_id or "", []).append(item)
            await asyncio.gather(*(self._flush(job_id, group) for job_id, group in groups.items()))

    async def _flush(
        self, job_id: str, group: list[tuple[EventBase, asyncio.Future[None]]]
    ) -> None:
        try:
            await self.handle(job_id, [event for event, _ in group])
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in group:
                if not future.done():
                    future.set_result(None)
