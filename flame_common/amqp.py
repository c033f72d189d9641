"""aio-pika plumbing of the notifier, flamelets and deployers: robust connections, declarations
of the namespace's exchanges and queues (as `flame_common.topology` describes them), event messages.

Both sides of a queue declare it through `topology.declare_queue`, so the arguments always match
(RabbitMQ refuses a re-declaration with different arguments).
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from flame_common.proofs import PROOF_HEADER
from flame_common.settings import FlameSettings
from flame_common.topology import NOTIFIER_INBOX, declare_exchange, declare_queue, topology
from schemas.events import EventBase, event_json

__all__ = ["NOTIFIER_INBOX"]  # the notifier inbox's consumer name, for agents addressing it


RECONNECT_INTERVAL = 1.0  # seconds between reconnection attempts after the broker went away


async def connect(settings: FlameSettings, *, name: str) -> AbstractRobustConnection:
    """A robust connection (reconnects every RECONNECT_INTERVAL seconds and restores channels,
    exchanges, queues and consumers): everyone is back within about a second of the broker."""
    return await aio_pika.connect_robust(
        settings.rabbit_url,
        client_properties={"connection_name": name},
        timeout=10,
        reconnect_interval=RECONNECT_INTERVAL,
    )


async def events_exchange(channel: AbstractChannel, settings: FlameSettings) -> AbstractExchange:
    """The durable topic exchange of events."""
    return await declare_exchange(channel, topology(settings).events)


async def agents_exchange(channel: AbstractChannel, settings: FlameSettings) -> AbstractExchange:
    """The durable direct exchange of agent inboxes (routing key = task id)."""
    return await declare_exchange(channel, topology(settings).agents)


async def agent_inbox(
    channel: AbstractChannel, settings: FlameSettings, task_id: str
) -> AbstractQueue:
    """Declare (idempotently) the durable inbox of one task's agent on the agents exchange."""
    return await declare_queue(channel, topology(settings).agent_inbox(task_id))


async def notifier_inbox(channel: AbstractChannel, settings: FlameSettings) -> AbstractQueue:
    """Declare the durable queue agents send registrations and heartbeats to."""
    return await declare_queue(channel, topology(settings).notifier_inbox)


async def consumer_queue(
    channel: AbstractChannel, settings: FlameSettings, consumer: str, event_types: list[str]
) -> AbstractQueue:
    """The quorum queue of one consumer bound to the events exchange for the given event types
    (dead-letters after `settings.delivery_limit` attempts)."""
    return await declare_queue(channel, topology(settings).consumer(consumer, event_types))


def event_message(
    event: EventBase, *, persistent: bool = True, ttl: float | None = None, proof: str = ""
) -> aio_pika.Message:
    """An AMQP message carrying one event as JSON (message id = event id), with its proof of
    origin (`flame_common.proofs`) when given."""
    return aio_pika.Message(
        event_json(event),
        headers={PROOF_HEADER: proof} if proof else None,
        content_type="application/json",
        message_id=event.id,
        type=event.type,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        expiration=ttl,
    )
