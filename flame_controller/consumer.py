"""Consumer of the controller's queues on the AMQP channel itself, batched, one ack per batch.

Deliveries (raw aiormq messages: no per-message wrapper objects) wait in an inbox, at most
`prefetch` unacked; each pass takes what is there, writes it as one batch per job (`handle`), and
only then acks: one `multiple` ack when every job's write succeeded. While the store is away (an
exception of `transient`, e.g. MongoDB unreachable) the failed jobs' writes are retried in place,
holding their messages, for up to `store_outage_seconds`: an outage burns no delivery attempt.
Otherwise each message is settled alone: the messages of a job whose write failed go back to the
queue after a delay (`flame_common.redelivery`; the quorum queue dead-letters them after
`delivery_limit` attempts), undecodable ones are rejected straight to the dead letters. After a
reconnect the consumer is registered again.

With `partitions` (several controllers on a namespace; `flame_controller.partitions`) it also
consumes the command queue and every partition queue. An event or command of a job whose
partition another controller owns is forwarded to that partition's queue (publisher confirms,
pipelined; settled once confirmed); the rest runs here: events as above, commands concurrently
with them (each answered on its `reply_to`). `job.create` runs wherever it arrives. A probe only
tells us we own its partition; a gained partition is replayed before its messages run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pydantic import ValidationError

from flame_common import metrics
from flame_common.logs import get_logger
from flame_common.proofs import proof_of
from flame_common.redelivery import attempt, before_return
from flame_common.settings import FlameSettings
from flame_common.topology import COMMAND, PROBE, declare_queue, topology
from flame_controller.handlers import command_job
from flame_controller.partitions import PROBE_SECONDS, Partitions
from flame_controller.provenance import Provenance
from schemas.commands import CommandReply
from schemas.errors import Forbidden
from schemas.events import EventBase, parse_event

log = get_logger(__name__)

EVENTS_CONSUMER = "controller.events"
# Event types the controller consumes from the events exchange (one binding each).
CONSUMED = (
    "task.status_changed",
    "task.metrics",
    "worker.created",
    "worker.failed",
    "agent.registered",
    "agent.lost",
)
PREFETCH = 2000  # unacked deliveries: the next batch gathers while the current one is written
MAX_BATCH = 1000  # deliveries per pass (nx-27017 inserts are cheapest in big batches)

COMMANDS_TAG = "commands"  # consumer tag of the command queue
_PARTITION_TAG = "#"  # partition queues: "<queue name>#<subscription number>"
# headers the broker adds (delivery counts, dead-lettering): a forwarded message starts afresh
_BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death-", "x-last-death-")

Handle = Callable[[str, Sequence[EventBase]], Awaitable[None]]
RunCommand = Callable[[bytes], Awaitable[dict[str, Any]]]


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
        partitions: Partitions | None = None,
        run_command: RunCommand | None = None,
        provenance: Provenance | None = None,
    ) -> None:
        assert (partitions is None) == (run_command is None), "partitions come with commands"
        assert run_command is None or provenance is not None, "commands are checked"
        self.settings = settings
        self.handle = handle
        self.transient = transient
        self.prefetch = prefetch
        self.max_batch = max_batch
        self.partitions = partitions
        self.run_command = run_command
        self.provenance = provenance  # None: events are not checked (batching tests only)
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self._spec = topology(settings).consumer(EVENTS_CONSUMER, CONSUMED)
        self._queue = self._spec.name
        self._channel: AbstractRobustChannel | None = None
        self._out: AbstractRobustChannel | None = None  # forwards, replies, probes (confirmed)
        self._tags: dict[str, int] = {}  # consumer tag -> partition, of our live subscriptions
        self._subscriptions = 0
        self._pass = asyncio.Lock()  # a pass and a release of partitions never interleave

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Declare the queues (the events queue binds every consumed type), start receiving
        into the inbox."""
        channel = self._channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await declare_queue(channel, self._spec)
        if self.partitions is not None:
            self._out = await connection.channel(publisher_confirms=True)
            await declare_queue(channel, topology(self.settings).commands)
            await declare_queue(channel, topology(self.settings).controllers)
            for queue in self.partitions.topology.partition_queues:
                await declare_queue(channel, queue)
        channel.reopen_callbacks.add(self._consume)  # the restored channel has no consumer
        await self._consume()

    async def _consume(self, *_: object) -> None:
        assert self._channel is not None
        underlay = await self._channel.get_underlay_channel()
        await underlay.basic_consume(self._queue, self._receive)
        if self.partitions is None:
            return
        self.partitions.lose_all()  # a new channel: the broker gave our queues to the others
        self._tags = {}
        await underlay.basic_consume(
            topology(self.settings).commands.name, self._receive, consumer_tag=COMMANDS_TAG
        )
        await underlay.basic_consume(topology(self.settings).controllers.name, self._receive)
        for partition in range(self.partitions.count):
            await self._subscribe(partition)

    async def _subscribe(self, partition: int) -> None:
        """Consume a partition queue (the broker makes us its active consumer, or a waiting one)."""
        assert self.partitions is not None and self._channel is not None
        self._subscriptions += 1
        tag = f"{self.partitions.queue(partition)}#{self._subscriptions}"
        self._tags[tag] = partition
        underlay = await self._channel.get_underlay_channel()
        await underlay.basic_consume(
            self.partitions.queue(partition), self._receive, consumer_tag=tag
        )

    async def rebalance(self) -> None:
        """Keep at most our share of the partitions (their count over the live controllers'):
        cancel the consumers of the others and queue up again behind the waiting controllers,
        which the broker makes active."""
        assert self.partitions is not None and self._out is not None
        channel = await self._out.get_underlay_channel()
        members = await channel.queue_declare(
            topology(self.settings).controllers.name, passive=True
        )
        share = -(-self.partitions.count // max(members.consumer_count or 1, 1))
        excess = sorted(self.partitions.owned)[share:]
        if not excess:
            return
        assert self._channel is not None
        async with self._pass:
            underlay = await self._channel.get_underlay_channel()
            for tag, partition in list(self._tags.items()):
                if partition in excess:
                    await underlay.basic_cancel(tag)
                    del self._tags[tag]
                    self.partitions.release(partition)
                    await self._subscribe(partition)
        log.info("partitions handed over", partitions=excess, controllers=members.consumer_count)

    async def _receive(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(message)

    async def run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            await asyncio.sleep(0)  # let deliveries already read from the socket join the batch
            while len(batch) < self.max_batch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            async with self._pass:
                await self.process(batch)

    async def probe(self) -> None:
        """Every `PROBE_SECONDS`, probe the partitions we do not own and drop the cached states
        of jobs that are not ours (e.g. jobs created here for another partition)."""
        assert self.partitions is not None and self._out is not None
        while True:
            try:
                await self.partitions.probe(await self._out.get_underlay_channel())
                await self.rebalance()
            except Exception as exc:  # the robust connection heals; the next round retries
                log.warning("partition probe failed", error=repr(exc))
            self.partitions.forget_others()
            await asyncio.sleep(PROBE_SECONDS)

    async def process(self, batch: Sequence[DeliveredMessage]) -> None:
        """Write one batch (one `handle` call per job, concurrently), then settle its messages."""
        # deliveries of a channel that closed meanwhile went back to their queues already
        batch = [m for m in batch if not m.channel.is_closed]
        if self.partitions is not None:
            batch = await self._without_released(batch)
        if not batch:
            return
        if self.partitions is not None:
            await self._partitions_first(batch)
        groups: dict[str, list[EventBase]] = {}
        positions: dict[str, list[int]] = {}  # job -> its events' positions in the batch
        forwards: dict[int, list[int]] = {}  # partition -> messages to forward there
        commands: list[int] = []
        job_of: list[str | None] = []  # per message: its job, "partition <n>" (forwarded),
        # "" (nothing to write: settled here) or None (undecodable)
        for i, message in enumerate(batch):
            if (route := self._route(message)) is not None:
                target, kind = route
                if target is not None:
                    forwards.setdefault(target, []).append(i)
                elif kind == "command":
                    commands.append(i)
                job_of.append(f"partition {target}" if target is not None else "")
                continue
            event = _decode(message.body)
            job_id = (event.job_id or "") if isinstance(event, EventBase) else event
            if isinstance(event, EventBase) and job_id:
                if self.partitions is not None and not self._here(message, job_id):
                    target = self.partitions.of(job_id)
                    self.partitions.forwarding(target)
                    forwards.setdefault(target, []).append(i)
                    job_of.append(f"partition {target}")
                    continue
                groups.setdefault(job_id, []).append(event)
                metrics.consumed("controller", event.type)  # not the forwarded ones: no repeats
                positions.setdefault(job_id, []).append(i)
            job_of.append(job_id)
        unproven = await self._sift(batch, groups, positions, job_of)
        failed, unforwarded, _ = await asyncio.gather(
            self._write(groups),
            self._forward(batch, forwards),
            asyncio.gather(*(self._command(batch[i]) for i in commands)),
        )
        for job_id, error in failed.items():
            log.error("event batch not written, requeued", job_id=job_id, error=repr(error))
        failed.update(unforwarded)
        failed.update(unproven)
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

    async def _without_released(self, batch: Sequence[DeliveredMessage]) -> list[DeliveredMessage]:
        """Return to their queues the deliveries of partitions we handed over (their new owner
        gets them); the rest of the batch."""
        kept = []
        for message in batch:
            if _PARTITION_TAG in _tag(message) and _tag(message) not in self._tags:
                await _settle(message, ack=False, requeue=True)
            else:
                kept.append(message)
        return kept

    async def _partitions_first(self, batch: Sequence[DeliveredMessage]) -> None:
        """Partitions that delivered to us are ours (replayed first); probes of ours that came
        back make their partitions direct (before this batch's shared-queue events are routed)."""
        assert self.partitions is not None
        tags = self._tags
        await self.partitions.gain({tags[t] for m in batch if (t := _tag(m)) in tags})
        for message in batch:
            if message.header.properties.message_type == PROBE and _tag(message) in tags:
                self.partitions.probed(tags[_tag(message)], message.header.properties.message_id)

    def _here(self, message: DeliveredMessage, job_id: str) -> bool:
        """Whether a job's event is written here: it came through its partition's queue (ours),
        or through the shared queue while its partition is direct."""
        assert self.partitions is not None
        if _tag(message) in self._tags:
            return self.partitions.owns(job_id)
        return self.partitions.direct(job_id)

    def _route(self, message: DeliveredMessage) -> tuple[int | None, str] | None:
        """None for an event; else (partition to forward to or None, "probe"|"command")."""
        if self.partitions is None:
            return None
        kind = message.header.properties.message_type
        if kind == PROBE:
            return None, "probe"
        if kind == COMMAND:  # forwarded to us: our partition
            return None, "command"
        if _tag(message) != COMMANDS_TAG:
            return None
        job_id = command_job(message.body)
        if job_id is None or self.partitions.owns(job_id):
            return None, "command"
        return self.partitions.of(job_id), "command forwarded"

    async def _forward(
        self, batch: Sequence[DeliveredMessage], forwards: dict[int, list[int]]
    ) -> dict[str, BaseException]:
        """Publish messages to the queues of the partitions that own them (confirmed)."""
        if not forwards:
            return {}
        assert self.partitions is not None and self._out is not None
        channel = await self._out.get_underlay_channel()
        failed: dict[str, BaseException] = {}
        for partition, indexes in forwards.items():
            try:
                await asyncio.gather(
                    *(
                        channel.basic_publish(
                            batch[i].body,
                            exchange="",
                            routing_key=self.partitions.queue(partition),
                            properties=_forwarded(batch[i]),
                        )
                        for i in indexes
                    )
                )
            except Exception as exc:
                failed[f"partition {partition}"] = exc
        return failed

    async def _command(self, message: DeliveredMessage) -> None:
        """Run one command and answer it on its `reply_to` (a lost answer: the caller's 503)."""
        assert self.run_command is not None and self._out is not None
        assert self.provenance is not None
        properties = message.header.properties
        refusal = self.provenance.command_refusal(message.body, proof_of(properties.headers))
        if refusal is None:
            reply = await self.run_command(message.body)
        else:  # not from the apiserver: nothing is done
            reply = CommandReply.failure(
                Forbidden(f"command refused: {refusal} (FLAME_SERVICE_SECRET)")
            ).model_dump(mode="json")
        if not properties.reply_to:
            return
        try:
            channel = await self._out.get_underlay_channel()
            await channel.basic_publish(
                json.dumps(reply).encode(),
                exchange="",
                routing_key=properties.reply_to,
                properties=Basic.Properties(
                    content_type="application/json", correlation_id=properties.correlation_id
                ),
            )
        except Exception as exc:
            log.warning("command reply not sent", error=repr(exc))

    async def _sift(
        self,
        batch: Sequence[DeliveredMessage],
        groups: dict[str, list[EventBase]],
        positions: dict[str, list[int]],
        job_of: list[str | None],
    ) -> dict[str, BaseException]:
        """Take the unproven events out of `groups` (their messages go to the dead letters:
        `job_of` None); returns the jobs whose task keys could not be read (requeued)."""
        provenance = self.provenance
        if provenance is None or not groups:
            return {}
        jobs = list(groups)
        results = await asyncio.gather(
            *(
                provenance.refused(
                    job_id,
                    groups[job_id],
                    [proof_of(batch[i].header.properties.headers) for i in positions[job_id]],
                )
                for job_id in jobs
            ),
            return_exceptions=True,
        )
        failed: dict[str, BaseException] = {}
        for job_id, refused in zip(jobs, results, strict=True):
            if isinstance(refused, BaseException):
                failed[job_id] = refused
                del groups[job_id]
                continue
            for n in refused:
                job_of[positions[job_id][n]] = None
            metrics.dead_lettered("controller", "unproven", len(refused))
            kept = [e for n, e in enumerate(groups[job_id]) if n not in refused]
            if kept:
                groups[job_id] = kept
            else:
                del groups[job_id]
        return failed

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


def _tag(message: DeliveredMessage) -> str:
    """The consumer tag the message was delivered to (which queue it came from)."""
    delivery = message.delivery
    return (delivery.consumer_tag or "") if isinstance(delivery, Basic.Deliver) else ""


def _forwarded(message: DeliveredMessage) -> Basic.Properties:
    """The properties a forwarded message keeps (not the broker's delivery bookkeeping)."""
    p = message.header.properties
    headers = {k: v for k, v in (p.headers or {}).items() if not k.startswith(_BROKER_HEADERS)}
    return Basic.Properties(
        content_type=p.content_type,
        delivery_mode=p.delivery_mode,
        message_id=p.message_id,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_type=COMMAND if _tag(message) == COMMANDS_TAG else p.message_type,
        headers=headers or None,
    )


def _decode(body: bytes) -> EventBase | str | None:
    """The event; "" for one without a job (dropped); None when undecodable (dead-lettered)."""
    try:
        event = parse_event(body)
    except ValidationError as exc:
        log.error("undecodable event dead-lettered", error=str(exc.errors()[0]["msg"]))
        metrics.dead_lettered("controller", "undecodable")
        return None
    if not event.job_id:
        log.warning("event without job id dropped", event_id=event.id, type=event.type)
        return ""
    return event
