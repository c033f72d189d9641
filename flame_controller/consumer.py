"""Consumer of the controller's event queue: aio-pika directly, batched writes, one ack per batch.

Deliveries wait in an inbox (up to `prefetch` unacked); each pass takes what is there, writes it
as one batch per job (`handle`), and only then acks: one `multiple` ack when every job's write
succeeded, else a requeue (nack) for the messages of the jobs whose write failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from flame_common.bus import names
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from schemas.events import EventBase, parse_event

log = get_logger(__name__)

EVENTS_CONSUMER = "controller.events"
# Event types the controller consumes from the events exchange (one binding each).
CONSUMED = (
    "task.status_changed",
    "worker.created",
    "worker.failed",
    "agent.registered",
    "agent.lost",
)
PREFETCH = 2000  # unacked deliveries: the next batch gathers while the current one is written
MAX_BATCH = 1000  # deliveries per pass (nx-27017 inserts are cheapest in big batches)

Handle = Callable[[str, Sequence[EventBase]], Awaitable[None]]


class EventConsumer:
    """Feeds consumed events to `handle(job_id, events)` in delivery order, batch by batch."""

    def __init__(
        self,
        settings: FlameSettings,
        handle: Handle,
        *,
        prefetch: int = PREFETCH,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.prefetch = prefetch
        self.max_batch = max_batch
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._conn: AbstractRobustConnection | None = None

    async def start(self) -> None:
        """Declare the durable queue, bind every consumed type, start receiving into the inbox."""
        bus = names(self.settings)
        self._conn = await aio_pika.connect_robust(self.settings.rabbit_url)
        channel = await self._conn.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(
            bus.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(bus.queue(EVENTS_CONSUMER), durable=True)
        for routing_key in CONSUMED:
            await queue.bind(exchange, routing_key=routing_key)
        await queue.consume(self._receive)

    async def close(self) -> None:
        """Stop receiving; unacked deliveries go back to the queue."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            await asyncio.sleep(0)  # let deliveries already read from the socket join the batch
            while len(batch) < self.max_batch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self.process(batch)

    async def process(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """Write one batch (one `handle` call per job, concurrently), then settle its messages."""
        groups: dict[str, list[EventBase]] = {}
        job_of: list[str] = []  # per message: its job ("" = dropped, acked as is)
        for message in batch:
            event = _decode(message.body)
            job_id = (event.job_id or "") if event is not None else ""
            if event is not None:
                groups.setdefault(job_id, []).append(event)
            job_of.append(job_id)
        jobs = list(groups)
        results = await asyncio.gather(
            *(self.handle(job_id, groups[job_id]) for job_id in jobs), return_exceptions=True
        )
        failed = set()
        for job_id, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                log.error("event batch not written, requeued", job_id=job_id, error=repr(result))
                failed.add(job_id)
        try:
            if not failed:  # every earlier delivery is settled: one ack covers the batch
                await batch[-1].ack(multiple=True)
                return
            for message, job_id in zip(batch, job_of, strict=True):
                if job_id in failed:
                    await message.nack(requeue=True)
                else:
                    await message.ack()
        except Exception as exc:  # channel lost: the broker redelivers; duplicates are skipped
            log.warning("acknowledgement failed", error=repr(exc))


def _decode(body: bytes) -> EventBase | None:
    try:
        event = parse_event(body)
    except ValidationError as exc:
        log.warning("undecodable event dropped", error=str(exc.errors()[0]["msg"]))
        return None
    if not event.job_id:
        log.warning("event without job id dropped", event_id=event.id, type=event.type)
        return None
    return event
