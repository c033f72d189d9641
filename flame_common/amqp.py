"""aio-pika plumbing of the notifier, flamelets and deployers: robust connections, queue layouts.

Both sides of a queue declare it through these functions, so the arguments always match
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

from flame_common.busnames import names
from flame_common.settings import FlameSettings
from schemas.events import EventBase, event_json

NOTIFIER_INBOX = "notifier.agents"  # registrations and heartbeats of agents, read by the notifier
AGENT_INBOX_EXPIRES_MS = (
    24 * 3600 * 1000
)  # an agent inbox unused for a day is removed by the broker


async def connect(settings: FlameSettings, *, name: str) -> AbstractRobustConnection:
    """A robust connection (reconnects and restores channels, exchanges, queues and consumers)."""
    return await aio_pika.connect_robust(
        settings.rabbit_url, client_properties={"connection_name": name}, timeout=10
    )


async def events_exchange(channel: AbstractChannel, settings: FlameSettings) -> AbstractExchange:
    """The durable topic exchange of events (same declaration as `flame_common.bus`)."""
    return await channel.declare_exchange(
        names(settings).events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def agents_exchange(channel: AbstractChannel, settings: FlameSettings) -> AbstractExchange:
    """The durable direct exchange of agent inboxes (routing key = task id)."""
    return await channel.declare_exchange(
        names(settings).agents_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def agent_inbox(
    channel: AbstractChannel, settings: FlameSettings, task_id: str
) -> AbstractQueue:
    """Declare (idempotently) the durable inbox of one task's agent on the agents exchange."""
    exchange = await agents_exchange(channel, settings)
    queue = await channel.declare_queue(
        names(settings).agent_queue(task_id),
        durable=True,
        arguments={"x-expires": AGENT_INBOX_EXPIRES_MS},
    )
    await queue.bind(exchange, routing_key=task_id)
    return queue


async def notifier_inbox(channel: AbstractChannel, settings: FlameSettings) -> AbstractQueue:
    """Declare the durable queue agents send registrations and heartbeats to."""
    return await channel.declare_queue(names(settings).queue(NOTIFIER_INBOX), durable=True)


async def consumer_queue(
    channel: AbstractChannel, settings: FlameSettings, consumer: str, event_types: list[str]
) -> AbstractQueue:
    """A durable queue of one consumer bound to the events exchange for the given event types."""
    exchange = await events_exchange(channel, settings)
    queue = await channel.declare_queue(names(settings).queue(consumer), durable=True)
    for event_type in event_types:
        await queue.bind(exchange, routing_key=event_type)
    return queue


def event_message(
    event: EventBase, *, persistent: bool = True, ttl: float | None = None
) -> aio_pika.Message:
    """An AMQP message carrying one event as JSON (message id = event id)."""
    return aio_pika.Message(
        event_json(event),
        content_type="application/json",
        message_id=event.id,
        type=event.type,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        expiration=ttl,
    )
