"""Outbox relay: publish appended events in log order, mark them `published`, resume on restart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic

from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_common.topology import declare_exchange, topology
from flame_controller.ports import JobStore
from schemas.events import EventBase, event_json

log = get_logger(__name__)

CHUNK = 1000  # publishes in flight at once (publisher confirms are pipelined)
MARK_EVERY = 5000  # published events whose flag is set in one write while busy...
MARK_DELAY = 1.0  # ...or after this many seconds without new events


class OutboxRelay:
    """Publishes events handed over by the controller; the log's `published` flag is the outbox."""

    def __init__(self, settings: FlameSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._queue: asyncio.Queue[Sequence[EventBase]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._exchange = topology(settings).events.name
        self._channel: AbstractRobustChannel | None = None
        self._unmarked: list[str] = []

    async def open(self, connection: AbstractRobustConnection) -> None:
        """Open the publishing channel (publisher confirms) and declare the events exchange."""
        self._channel = await connection.channel(publisher_confirms=True)
        await declare_exchange(self._channel, topology(self.settings).events)

    def enqueue(self, events: Sequence[EventBase]) -> None:
        if events:
            self._idle.clear()
            self._queue.put_nowait(events)

    async def republish_pending(self) -> int:
        """Publish what a previous run appended but did not publish (in per-job order)."""
        pending = await self.store.pending()
        await self._publish(pending)
        if pending:
            log.info("outbox re-published", count=len(pending))
        return len(pending)

    async def run(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(
                    self._queue.get(), MARK_DELAY if self._unmarked else None
                )
            except TimeoutError:  # quiet for a moment: do the bookkeeping now
                await self._mark_all()
                continue
            batch = list(first)
            while not self._queue.empty():
                batch.extend(self._queue.get_nowait())
            try:
                await self._publish(batch, mark=False)
                self._unmarked.extend(e.id for e in batch)
                if len(self._unmarked) >= MARK_EVERY:
                    await self._mark_all()
            except Exception:  # the events stay unpublished in the log; a restart re-sends them
                log.exception("outbox publish failed", count=len(batch))
            if self._queue.empty() and not self._unmarked:
                self._idle.set()

    async def _mark_all(self) -> None:
        """Set `published` on what went out (bookkeeping for restarts, off the hot path)."""
        try:
            await self.store.mark_published(self._unmarked)
            self._unmarked = []
        except Exception:  # retried on the next pass; at worst a restart re-publishes
            log.exception("outbox marking failed", count=len(self._unmarked))
        if self._queue.empty():
            self._idle.set()

    async def drained(self) -> None:
        """Wait until every enqueued event was published (tests, benchmarks, shutdown)."""
        await self._idle.wait()

    async def _publish(self, events: Sequence[EventBase], *, mark: bool = True) -> None:
        """Publish on the AMQP channel itself (no per-message wrapper objects), confirms awaited."""
        assert self._channel is not None, "open() first"
        for i in range(0, len(events), CHUNK):
            chunk = events[i : i + CHUNK]
            channel = await self._channel.get_underlay_channel()  # current after a reconnect
            await asyncio.gather(
                *(
                    channel.basic_publish(
                        event_json(e),
                        exchange=self._exchange,
                        routing_key=e.type,
                        properties=_properties(e),
                    )
                    for e in chunk
                )
            )
            if mark:
                await self.store.mark_published([e.id for e in chunk])


def _properties(event: EventBase) -> Basic.Properties:
    """As `flame_common.bus.publish_event` sends: persistent JSON, message id = event id."""
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=event.id,
    )
