"""FastStream helpers for the event bus: objects derived from `flame_common.topology`, publishing.

Every exchange and queue name is prefixed by `settings.namespace`, so stacks (and test runs) can
share one broker without seeing each other's traffic.
"""

from __future__ import annotations

from typing import Any, cast

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from flame_common.busnames import BusNames, names  # noqa: F401  (BusNames re-exported)
from flame_common.proofs import PROOF_HEADER, service_proof
from flame_common.settings import FlameSettings
from flame_common.topology import Exchange, Queue, topology
from schemas.events import EventBase, event_json


def rabbit_exchange(exchange: Exchange) -> RabbitExchange:
    return RabbitExchange(exchange.name, type=ExchangeType(exchange.kind), durable=True)


def rabbit_queue(queue: Queue) -> RabbitQueue:
    """The FastStream queue of a topology queue (bind it with its exchange and routing key)."""
    return RabbitQueue(
        queue.name,
        durable=queue.durable,
        exclusive=queue.exclusive,
        auto_delete=queue.exclusive,
        # FastStream types arguments per queue type; an `x-queue-type` in them wins
        arguments=cast(Any, dict(queue.arguments) or None),
    )


def events_exchange(settings: FlameSettings) -> RabbitExchange:
    return rabbit_exchange(topology(settings).events)


def make_broker(settings: FlameSettings) -> RabbitBroker:
    """A FastStream broker for one service (quiet logs; structlog carries ours)."""
    import logging

    return RabbitBroker(settings.rabbit_url, logger=None, log_level=logging.DEBUG)


async def publish_event(broker: RabbitBroker, settings: FlameSettings, event: EventBase) -> None:
    """Publish one event (persistent) to the events exchange with its type as routing key,
    proven with the service secret."""
    await broker.publish(
        event_json(event),
        headers={PROOF_HEADER: service_proof(settings.service_secret, event)},
        exchange=events_exchange(settings),
        routing_key=event.type,
        persist=True,
        content_type="application/json",
        message_id=event.id,
    )
