"""Which job partitions this controller writes: gained on a delivery, lost with the channel.

Jobs are split into `FLAME_CONTROLLER_PARTITIONS` partitions by a hash of the job id
(`Topology.partition_of`). Every controller of a namespace consumes every partition queue; the
broker delivers each queue to one of them at a time (single active consumer), so that one is the
only writer of the partition's jobs. A consumer learns that it is active only from a delivery, so
each controller sends a probe to every partition it does not own every `PROBE_SECONDS`: when the
active consumer dies, the broker hands its queue to another, whose next probe tells it. A gain
first drops what the controller cached of the partition's jobs and replays its open jobs, then
its messages are handled; a lost channel loses every partition (their cached states go). The
states of jobs of other partitions (a job created here, a command answered from the log) are
dropped after each probe round.

Events arrive on the shared events queue (`<ns>.controller.events`, every controller consuming
it); one of a partition we do not own is forwarded to that partition's queue. Once we own it,
its events are still forwarded until one of our own probes, sent after our last forward, comes
back through the queue: everything forwarded before has then been handled, so handling the next
ones at once keeps their order ("direct" partitions).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable

from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from flame_common.logs import get_logger
from flame_common.topology import PROBE, Topology

log = get_logger(__name__)

PROBE_SECONDS = 1.0  # how often a controller probes the partitions that are not direct
PROBE_EXPIRY_MS = 10_000

OnGain = Callable[[frozenset[int]], Awaitable[None]]
Forget = Callable[[Callable[[str], bool]], None]  # drops the cached states of the jobs selected


class Partitions:
    """The partitions this controller owns, and what happens when that changes."""

    def __init__(self, topology: Topology, *, on_gain: OnGain, forget: Forget) -> None:
        self.topology = topology
        self.count = topology.partitions
        self.names = [q.name for q in topology.partition_queues]
        self._owned: set[int] = set()
        self._direct: set[int] = set()  # owned, and nothing we forwarded there is still queued
        self._instance = uuid.uuid4().hex[:12]  # tells our probes from other controllers'
        self._round = 0  # probe rounds sent
        self._forwarded: dict[int, int] = {}  # partition -> probe round of our last forward
        self._on_gain = on_gain
        self._forget = forget

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    def of(self, job_id: str) -> int:
        return self.topology.partition_of(job_id)

    def owns(self, job_id: str) -> bool:
        return self.of(job_id) in self._owned

    def direct(self, job_id: str) -> bool:
        """Its events from the shared queue may be handled here at once."""
        return self.of(job_id) in self._direct

    def queue(self, partition: int) -> str:
        return self.names[partition]

    def forwarding(self, partition: int) -> None:
        """We forward a message to `partition`: it is not direct until a later probe returns."""
        self._forwarded[partition] = self._round
        self._direct.discard(partition)

    async def gain(self, partitions: Iterable[int]) -> None:
        """Partitions delivered to us: replay those that are new before their messages run."""
        new = frozenset(partitions) - self._owned
        if not new:
            return
        try:
            await self._on_gain(new)
        except Exception as exc:  # e.g. the store is away: their messages come round again
            log.error("partitions not replayed", partitions=sorted(new), error=repr(exc))
            await asyncio.sleep(PROBE_SECONDS)
            return
        self._owned |= new
        log.info("partitions gained", partitions=sorted(new), owned=sorted(self._owned))

    def probed(self, partition: int, probe_id: str | None) -> None:
        """A probe came back through `partition`'s queue (which we own, having received it)."""
        instance, _, sent = (probe_id or "").partition(".")
        if instance != self._instance or partition not in self._owned:
            return
        if self._forwarded.get(partition, -1) < int(sent):
            self._direct.add(partition)

    def release(self, partition: int) -> None:
        """We hand `partition` over to another controller: forget its jobs."""
        self._owned.discard(partition)
        self._direct.discard(partition)
        self._forget(lambda job_id: self.of(job_id) == partition)

    def lose_all(self) -> None:
        """Our channel is gone: the broker hands our partitions to the other controllers."""
        lost = sorted(self._owned)
        self._owned, self._direct = set(), set()
        self._forget(lambda _: True)
        if lost:
            log.warning("partitions lost", partitions=lost)

    def forget_others(self) -> None:
        """Drop the cached states of jobs of partitions we do not own."""
        self._forget(lambda job_id: not self.owns(job_id))

    async def probe(self, channel: AbstractChannel) -> None:
        """Send one probe to each partition that is not direct (whoever is active receives it;
        ours coming back from an owned one makes it direct)."""
        self._round += 1
        properties = Basic.Properties(
            message_type=PROBE,
            message_id=f"{self._instance}.{self._round}",
            delivery_mode=1,
            expiration=str(PROBE_EXPIRY_MS),  # a probe stuck behind a backlog is dropped
        )
        await asyncio.gather(
            *(
                channel.basic_publish(b"", exchange="", routing_key=name, properties=properties)
                for k, name in enumerate(self.names)
                if k not in self._direct
            )
        )
