"""Outbox relay: publish appended events in log order until confirmed, mark them `published`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic
from pamqp.common import FieldTable

from flame_common import metrics
from flame_common.logs import get_logger
from flame_common.proofs import PROOF_HEADER, service_proof
from flame_common.settings import FlameSettings
from flame_common.topology import declare_exchange, declare_queue, topology
from flame_controller.ports import JobStore
from schemas.events import EventBase, event_json

log = get_logger(__name__)

CHUNK = 1000  # publishes in flight at once (publisher confirms are pipelined)
MARK_EVERY = 5000  # published events whose flag is set in one write while busy...
MARK_DELAY = 1.0  # ...or after this many seconds without new events
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # backoff between attempts of an unconfirmed batch (s)
PUBLISH_TIMEOUT = 30.0  # bound of one confirm, and of one wait on a broker that blocks us
# Event types the deployers and the notifier consume, published mandatory: returned unroutable
# (their queue is gone), such an event is put in the dead letters. The other types may have no
# consumer: they are published without `mandatory` (a return would cost a broker round trip and
# a copy of the message coming back, for nothing).
ROUTED = frozenset(
    {
        "worker.requested",
        "worker.released",
        "task.assigned",
        "task.stop_requested",
        "task.status_changed",
        "job.state_changed",
    }
)
UNROUTABLE = "unroutable"  # the dead letter's reason


class Unconfirmed(Exception):
    """The broker did not confirm `rest` (the first unconfirmed event and all after it)."""

    def __init__(self, rest: Sequence[EventBase], error: BaseException) -> None:
        self.rest, self.error = list(rest), error
        super().__init__(f"{len(rest)} event(s) unconfirmed: {error!r}")


class BrokerBlocked(Exception):
    """The broker refuses publishes for now (memory or disk alarm: connection.blocked)."""


class OutboxRelay:
    """Publishes events handed over by the controller; the log's `published` flag is the outbox.

    Every event is published at least once: a publish that is nacked, times out or fails with
    the channel or connection is retried (backoff, channel reopened) from the first unconfirmed
    event on, in order; while the broker blocks publishers it waits. Publishes of the `ROUTED`
    types are mandatory.
    """

    def __init__(self, settings: FlameSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._queue: asyncio.Queue[Sequence[EventBase]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._topology = topology(settings)
        self._exchange = self._topology.events.name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._unmarked: list[str] = []

    async def open(self, connection: AbstractRobustConnection) -> None:
        """Open the publishing channel (publisher confirms), declare the events exchange and the
        dead letters."""
        self._connection = connection
        self._channel = await self._open_channel()
        await declare_exchange(self._channel, self._topology.events)
        await declare_queue(self._channel, self._topology.dead_letter_queue)

    def enqueue(self, events: Sequence[EventBase]) -> None:
        if events:
            self._idle.clear()
            self._queue.put_nowait(events)
            metrics.OUTBOX_BACKLOG.inc(len(events))

    async def republish_pending(self) -> int:
        """Publish what a previous run appended but did not publish (in per-job order)."""
        pending = await self.store.pending()
        metrics.OUTBOX_BACKLOG.inc(len(pending))
        await self._deliver(pending, mark=True)
        metrics.OUTBOX_BACKLOG.dec(len(pending))
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
            await self._deliver(batch)
            metrics.OUTBOX_BACKLOG.dec(len(batch))
            self._unmarked.extend(e.id for e in batch)
            if len(self._unmarked) >= MARK_EVERY:
                await self._mark_all()
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

    async def _deliver(self, events: Sequence[EventBase], *, mark: bool = False) -> None:
        """Publish `events` until the broker confirmed each, retrying with backoff."""
        rest, delay = list(events), RETRY_FIRST
        while rest:
            try:
                await self._publish(rest, mark=mark)
                return
            except Unconfirmed as exc:
                rest, error = exc.rest, exc.error
            except Exception as exc:  # before any publish: channel closed, broker blocked
                error = exc
            metrics.OUTBOX_PUBLISH_FAILURES.inc()
            log.warning(
                "outbox publish failed, retrying",
                unconfirmed=len(rest),
                retry_in=delay,
                error=repr(error),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            await self._reopen()

    async def _reopen(self) -> None:
        """A new channel when ours was closed (the connection itself reconnects on its own)."""
        assert self._connection is not None, "open() first"
        if self._channel is not None and not self._channel.is_closed:
            return
        try:
            self._channel = await asyncio.wait_for(self._open_channel(), PUBLISH_TIMEOUT)
        except Exception as exc:  # tried again after the next failed attempt
            log.warning("outbox channel not reopened", error=repr(exc))

    async def _open_channel(self) -> AbstractRobustChannel:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        assert isinstance(channel, AbstractRobustChannel)
        return channel

    async def _ready(self) -> AbstractChannel:
        """The AMQP channel, once the connection is up and the broker takes publishes."""
        assert self._channel is not None, "open() first"
        channel = await self._channel.get_underlay_channel()  # current after a reconnect
        try:
            await asyncio.wait_for(channel.connection.ready(), PUBLISH_TIMEOUT)
        except TimeoutError:
            raise BrokerBlocked(
                f"the broker blocks publishing (memory or disk alarm) or is away for "
                f"{PUBLISH_TIMEOUT:g} s"
            ) from None
        return channel

    async def _publish(self, events: Sequence[EventBase], *, mark: bool) -> None:
        """Publish on the AMQP channel itself (no per-message wrapper objects), confirms awaited;
        raises Unconfirmed with the events from the first one not confirmed."""
        for i in range(0, len(events), CHUNK):
            chunk = events[i : i + CHUNK]
            try:
                channel = await self._ready()
            except Exception as exc:
                raise Unconfirmed(events[i:], exc) from exc
            results = await asyncio.gather(
                *(
                    channel.basic_publish(
                        event_json(e),
                        exchange=self._exchange,
                        routing_key=e.type,
                        properties=_properties(e, self.settings.service_secret),
                        mandatory=e.type in ROUTED,
                        timeout=PUBLISH_TIMEOUT,
                    )
                    for e in chunk
                ),
                return_exceptions=True,
            )
            for j, result in enumerate(results):
                if isinstance(result, BaseException):
                    _count(chunk[:j])
                    raise Unconfirmed(events[i + j :], result)
            _count(chunk)
            returned = [
                e for e, r in zip(chunk, results, strict=True) if isinstance(r, DeliveredMessage)
            ]
            try:
                await self._dead_letter([e for e in returned if e.type in ROUTED], channel)
            except Exception as exc:
                raise Unconfirmed(events[i:], exc) from exc
            if mark:
                await self.store.mark_published([e.id for e in chunk])

    async def _dead_letter(self, events: Sequence[EventBase], channel: AbstractChannel) -> None:
        """Events nobody's queue took go to the namespace's dead letters (visible, not lost)."""
        if not events:
            return
        for e in events:
            confirmed = await channel.basic_publish(
                event_json(e),
                exchange=self._topology.dead_letters.name,
                routing_key=e.type,
                properties=_properties(e, self.settings.service_secret, dead=True),
                timeout=PUBLISH_TIMEOUT,
            )
            if not isinstance(confirmed, Basic.Ack):
                raise RuntimeError(f"dead letter of event {e.id} not confirmed: {confirmed!r}")
        metrics.dead_lettered("controller", "unroutable", len(events))
        log.error(
            "unroutable events dead-lettered",
            count=len(events),
            types=sorted({e.type for e in events}),
            event_ids=[e.id for e in events],
        )


def _count(events: Sequence[EventBase]) -> None:
    """Count confirmed publishes by type (one increment per type of the chunk)."""
    types: dict[str, int] = {}
    for e in events:
        types[e.type] = types.get(e.type, 0) + 1
    for type_, n in types.items():
        metrics.published("controller", type_, n)


def _properties(event: EventBase, secret: str, *, dead: bool = False) -> Basic.Properties:
    """As `flame_common.bus.publish_event` sends: persistent JSON, message id = event id, proven
    with the service `secret`; a dead letter names why and where it failed as the broker does
    (`x-first-death-*`)."""
    headers: FieldTable = {PROOF_HEADER: service_proof(secret, event)}
    if dead:
        headers.update({"x-first-death-reason": UNROUTABLE, "x-first-death-queue": ""})
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=event.id,
        headers=headers,
    )
