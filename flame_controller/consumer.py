"""Consumer of the controller's event queue on the AMQP channel itself, batched, one ack per batch.

Deliveries (raw aiormq messages: no per-message wrapper objects) wait in an inbox, at most
`prefetch` unacked; each pass takes what is there, writes it as one batch per job (`handle`), and
only then acks: one `multiple` ack when every job's write succeeded. While the store is away (an
exception of `transient`, e.g. MongoDB unreachable) the failed jobs' writes are retried in place,
holding their messages, for up to `store_outage_seconds`: an outage burns no delivery attempt.
Otherwise each message is settled alone: the messages of a job whose write failed go back to the
queue after a delay (`flame_common.redelivery`; the quorum queue dead-letters them after
`delivery_limit` attempts), undecodable ones are rejected straight to the dead letters. After a
reconnect the consumer is registered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from flame_common.logs import get_logger
from flame_common.redelivery import attempt, before_return
from flame_common.settings import FlameSettings
from flame_common.topology import declare_queue, topology
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
        transient: tuple[type[BaseException], ...] = (),
        prefetch: int = PREFETCH,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.transient = transient
        self.prefetch = prefetch
        self.max_batch = max_batch
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self._spec = topology(settings).consumer(EVENTS_CONSUMER, CONSUMED)
        self._queue = self._spec.name
        self._channel: AbstractRobustChannel | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Declare the durable queue, bind every consumed type, start receiving into the inbox."""
        channel = self._channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await declare_queue(channel, self._spec)
        channel.reopen_callbacks.add(self._consume)  # the restored channel has no consumer
        await self._consume()

    async def _consume(self, *_: object) -> None:
        assert self._channel is not None
        underlay = await self._channel.get_underlay_channel()
        await underlay.basic_consume(self._queue, self._receive)

    async def _receive(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(message)

    async def run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            await asyncio.sleep(0)  # let deliveries already read from the socket join the batch
            while len(batch) < self.max_batch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self.process(batch)

    async def process(self, batch: Sequence[DeliveredMessage]) -> None:
        """Write one batch (one `handle` call per job, concurrently), then settle its messages."""
        groups: dict[str, list[EventBase]] = {}
        job_of: list[str | None] = []  # per message: its job ("" = dropped; None = undecodable)
        for message in batch:
            event = _decode(message.body)
            job_id = (event.job_id or "") if isinstance(event, EventBase) else event
            if isinstance(event, EventBase) and job_id:
                groups.setdefault(job_id, []).append(event)
            job_of.append(job_id)
        failed = await self._write(groups)
        for job_id, error in failed.items():
            log.error("event batch not written, requeued", job_id=job_id, error=repr(error))
        if not failed and None not in job_of:  # one ack covers the batch and earlier deliveries
            await _settle(batch[-1], ack=True, multiple=True)
            return
        if failed:
            await self._before_return(batch, job_of, failed)
        for message, job_id in zip(batch, job_of, strict=True):
            if job_id is None:
                await _settle(message, ack=False, requeue=False)
            else:
                await _settle(message, ack=job_id not in failed)

    async def _write(self, groups: dict[str, list[EventBase]]) -> dict[str, BaseException]:
        """One `handle` per job, concurrently; jobs whose write failed only because the store is
        away are retried in place (backoff up to 5 s) until `store_outage_seconds` have passed.
        Returns the jobs whose write failed, with their errors."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.store_outage_seconds
        delay = 0.1
        pending, failed = dict(groups), {}
        while pending:
            jobs = list(pending)
            results = await asyncio.gather(
                *(self.handle(job_id, pending[job_id]) for job_id in jobs), return_exceptions=True
            )
            errors = {
                j: r for j, r in zip(jobs, results, strict=True) if isinstance(r, BaseException)
            }
            away = {j for j, e in errors.items() if isinstance(e, self.transient)}
            failed.update({j: e for j, e in errors.items() if j not in away})
            left = deadline - loop.time()
            if not away or left <= 0:
                failed.update({j: errors[j] for j in away})
                break
            log.warning(
                "store unavailable, retrying in place",
                jobs=len(away),
                retry_in=round(min(delay, left), 2),
                error=repr(errors[next(iter(away))]),
            )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
            pending = {j: pending[j] for j in away}
        return failed

    async def _before_return(
        self,
        batch: Sequence[DeliveredMessage],
        job_of: Sequence[str | None],
        failed: dict[str, BaseException],
    ) -> None:
        """Wait before the failed messages go back (log those the broker now dead-letters)."""
        tried = [
            (m.header.properties.message_id or "", attempt(m.header.properties.headers))
            for m, job_id in zip(batch, job_of, strict=True)
            if job_id in failed
        ]
        errors = "; ".join(f"{job_id}: {exc!r}" for job_id, exc in failed.items())
        await before_return(self.settings, self._queue, tried, errors)


async def _settle(
    message: DeliveredMessage, *, ack: bool, multiple: bool = False, requeue: bool = True
) -> None:
    """Ack, or nack (requeue, or dead-letter); on a channel lost meanwhile the broker has requeued
    it anyway (the redelivery is then skipped as a duplicate)."""
    tag = message.delivery_tag
    assert tag is not None  # always set on a consumed delivery
    try:
        if ack:
            await message.channel.basic_ack(tag, multiple=multiple)
        else:
            await message.channel.basic_nack(tag, requeue=requeue)
    except Exception as exc:
        log.warning("acknowledgement failed", error=repr(exc))


def _decode(body: bytes) -> EventBase | str | None:
    """The event; "" for one without a job (dropped); None when undecodable (dead-lettered)."""
    try:
        event = parse_event(body)
    except ValidationError as exc:
        log.error("undecodable event dead-lettered", error=str(exc.errors()[0]["msg"]))
        return None
    if not event.job_id:
        log.warning("event without job id dropped", event_id=event.id, type=event.type)
        return ""
    return event
