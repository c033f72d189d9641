"""The control plane's broker topology of one namespace, and the one way to declare it.

Every exchange, queue, binding and queue argument (dead-lettering, delivery limit, expiry) is
described here as data (`Exchange`, `Queue`, built by `Topology`); `declare_exchange` and
`declare_queue` declare them with aio-pika, `flame_common.bus` derives FastStream objects from the
same description. Names come from `BusNames`; aio-pika is imported only when declaring.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from flame_common.busnames import BusNames
from flame_common.settings import FlameSettings

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

NOTIFIER_INBOX = "notifier.agents"  # registrations and heartbeats of agents, read by the notifier
# Messages of a controller partition queue besides events (AMQP `type` property):
PROBE = "controller.probe"  # tells whoever receives it that it is the partition's active consumer
COMMAND = "controller.command"  # an RPC command forwarded to the partition of its job
AGENT_INBOX_EXPIRES_MS = 24 * 3600 * 1000  # an agent inbox unused for a day is removed


class TopologyError(RuntimeError):
    """A queue on the broker cannot take the declared form (e.g. an old queue still in use)."""


@dataclass(frozen=True)
class Exchange:
    name: str
    kind: Literal["topic", "direct", "fanout"]


@dataclass(frozen=True)
class Queue:
    """A durable (or exclusive) queue, its arguments and its bindings to one exchange."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    exchange: Exchange | None = None
    routing_keys: tuple[str, ...] = ()
    exclusive: bool = False
    dead_letter_queue: Queue | None = None  # declared first, so a dead letter has a target

    @property
    def durable(self) -> bool:
        return not self.exclusive


@dataclass(frozen=True)
class Topology:
    """Every exchange and queue of one namespace (see the Messaging section of the architecture).

    Consumer queues are quorum queues: the broker counts deliveries, and a message returned
    `delivery_limit` times goes to the `<ns>.dead-letters` exchange and queue.
    """

    names: BusNames
    delivery_limit: int = 5
    partitions: int = 8

    @property
    def events(self) -> Exchange:
        """Topic exchange: every event, routing key = event type."""
        return Exchange(self.names.events_exchange, "topic")

    @property
    def agents(self) -> Exchange:
        """Direct exchange: messages for one agent, routing key = task id."""
        return Exchange(self.names.agents_exchange, "direct")

    @property
    def dead_letters(self) -> Exchange:
        """Fanout exchange the consumer queues dead-letter to."""
        return Exchange(self.names.dead_letters, "fanout")

    @property
    def dead_letter_queue(self) -> Queue:
        """Classic queue of every dead letter of the namespace, read (not consumed) by the API."""
        return Queue(self.names.dead_letters, exchange=self.dead_letters, routing_keys=("",))

    def _quorum(self, **extra: Any) -> Mapping[str, Any]:
        arguments = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit - 1,  # counts returns: attempts - 1
            "x-dead-letter-exchange": self.dead_letters.name,
            **extra,
        }
        return MappingProxyType(arguments)

    def consumer(self, consumer: str, event_types: tuple[str, ...] | list[str]) -> Queue:
        """The quorum queue of one event consumer (e.g. 'controller.events', 'deployer.default')."""
        return Queue(
            self.names.queue(consumer),
            arguments=self._quorum(),
            exchange=self.events,
            routing_keys=tuple(event_types),
            dead_letter_queue=self.dead_letter_queue,
        )

    def partition_of(self, job_id: str) -> int:
        """The controller partition a job belongs to (a stable hash of its id)."""
        return zlib.crc32(job_id.encode()) % self.partitions

    def partition(self, index: int) -> Queue:
        """Quorum queue of one controller partition: its jobs' events and forwarded commands.

        Every controller consumes every partition queue; the broker delivers to one of them at a
        time (single active consumer) and hands the queue to another when it goes away, so each
        job has one writer. Messages reach it by queue name through the default exchange.
        """
        return Queue(
            self.names.queue(f"controller.partition.{index}"),
            arguments=self._quorum(**{"x-single-active-consumer": True}),
            dead_letter_queue=self.dead_letter_queue,
        )

    @property
    def partition_queues(self) -> tuple[Queue, ...]:
        return tuple(self.partition(i) for i in range(self.partitions))

    @property
    def controllers(self) -> Queue:
        """Classic queue every live controller consumes and nobody sends to: its consumer count
        is the number of controllers sharing the partitions."""
        return Queue(self.names.queue("controller.members"))

    @property
    def commands(self) -> Queue:
        """RPC queue of the controller; every command gets a reply (never fails), and expires."""
        return Queue(self.names.command_queue)

    def replies(self, suffix: str) -> Queue:
        """Exclusive reply queue of one RPC client (gone with its connection)."""
        return Queue(f"{self.names.queue('apiserver.replies')}.{suffix}", exclusive=True)

    @property
    def notifier_inbox(self) -> Queue:
        """Classic queue of agent registrations and heartbeats (heartbeats expire by TTL, so it
        does not dead-letter: expired heartbeats would fill the dead-letter queue)."""
        return Queue(self.names.queue(NOTIFIER_INBOX))

    def agent_inbox(self, task_id: str) -> Queue:
        """Classic inbox of one task's agent; removed by the broker after a day unused."""
        return Queue(
            self.names.agent_queue(task_id),
            arguments=MappingProxyType({"x-expires": AGENT_INBOX_EXPIRES_MS}),
            exchange=self.agents,
            routing_keys=(task_id,),
        )


def topology(settings: FlameSettings) -> Topology:
    return Topology(
        BusNames(settings.namespace), settings.delivery_limit, settings.controller_partitions
    )


async def declare_exchange(channel: AbstractChannel, exchange: Exchange) -> AbstractExchange:
    """Declare one durable exchange (idempotent)."""
    import aio_pika

    return await channel.declare_exchange(
        exchange.name, aio_pika.ExchangeType(exchange.kind), durable=True
    )


async def declare_queue(channel: AbstractChannel, queue: Queue) -> AbstractQueue:
    """Declare a queue with its dead-letter target, exchange and bindings (idempotent).

    A queue of an older layout (other arguments; RabbitMQ refuses the declaration) is replaced
    when it is empty and unused; otherwise `TopologyError` says what to do.
    """
    from aiormq.exceptions import ChannelPreconditionFailed

    if queue.dead_letter_queue is not None:
        await declare_queue(channel, queue.dead_letter_queue)
    exchange = await declare_exchange(channel, queue.exchange) if queue.exchange else None
    try:
        declared = await _declare(channel, queue)
    except ChannelPreconditionFailed:
        await channel.reopen()
        await _replace(channel, queue)
        declared = await _declare(channel, queue)
    if exchange is not None:
        for key in queue.routing_keys:
            await declared.bind(exchange, routing_key=key)
    return declared


async def _declare(channel: AbstractChannel, queue: Queue) -> AbstractQueue:
    return await channel.declare_queue(
        queue.name,
        durable=queue.durable,
        exclusive=queue.exclusive,
        auto_delete=queue.exclusive,
        arguments=dict(queue.arguments) or None,
    )


async def _replace(channel: AbstractChannel, queue: Queue) -> None:
    """Delete a queue of an older layout, if nothing would be lost."""
    from flame_common.logs import get_logger

    old = await channel.declare_queue(queue.name, passive=True)
    result = old.declaration_result
    if result.message_count or result.consumer_count:
        raise TopologyError(
            f"queue '{queue.name}' has an older layout and holds {result.message_count} "
            f"message(s) with {result.consumer_count} consumer(s); stop its consumers and let "
            "the previous Flame version drain it, or delete it "
            f"(rabbitmqctl delete_queue {queue.name}), then start again"
        )
    await channel.queue_delete(queue.name, if_unused=True, if_empty=True)
    get_logger(__name__).info("queue of an older layout replaced", queue=queue.name)
