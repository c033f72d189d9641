"""FastStream helpers for the event bus: the events exchange, consumer queues, publishing.

Every exchange and queue name is prefixed by `settings.namespace`, so stacks (and test runs) can
share one broker without seeing each other's traffic.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from flame_common.busnames import BusNames, names  # noqa: F401  (BusNames re-exported)
from flame_common.settings import FlameSettings
from schemas.events import EventBase, event_json


def events_exchange(settings: FlameSettings) -> RabbitExchange:
    return RabbitExchange(names(settings).events_exchange, type=ExchangeType.TOPIC, durable=True)


def consumer_queue(settings: FlameSettings, consumer: str, routing_key: str = "#") -> RabbitQueue:
    return RabbitQueue(names(settings).queue(consumer), durable=True, routing_key=routing_key)


def make_broker(settings: FlameSettings) -> RabbitBroker:
    """A FastStream broker for one service (quiet logs; structlog carries ours)."""
    import logging

    return RabbitBroker(settings.rabbit_url, logger=None, log_level=logging.DEBUG)


async def publish_event(broker: RabbitBroker, settings: FlameSettings, event: EventBase) -> None:
    """Publish one event (persistent) to the events exchange with its type as routing key."""
    await broker.publish(
        event_json(event),
        exchange=events_exchange(settings),
        routing_key=event.type,
        persist=True,
        content_type="application/json",
        message_id=event.id,
    )
