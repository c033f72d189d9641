"""Event-bus names and helpers on RabbitMQ: the events exchange, the RPC queue, agent inboxes.

Every exchange and queue name is prefixed by `settings.namespace`, so stacks (and test runs) can
share one broker without seeing each other's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from flame_common.settings import FlameSettings
from schemas.events import EventBase, event_json


@dataclass(frozen=True)
class BusNames:
    """All broker names of one namespace."""

    namespace: str

    @property
    def events_exchange(self) -> str:
        """Topic exchange: every event, routing key = event type."""
        return f"{self.namespace}.events"

    @property
    def agents_exchange(self) -> str:
        """Direct exchange: messages for one agent, routing key = task id."""
        return f"{self.namespace}.agents"

    @property
    def command_queue(self) -> str:
        """RPC queue of the controller (job commands)."""
        return f"{self.namespace}.controller.commands"

    def queue(self, consumer: str) -> str:
        """Durable queue of one consumer (e.g. 'controller.events', 'deployer.default')."""
        return f"{self.namespace}.{consumer}"

    def agent_queue(self, task_id: str) -> str:
        return f"{self.namespace}.agent.{task_id}"


def names(settings: FlameSettings) -> BusNames:
    return BusNames(settings.namespace)


def events_exchange(settings: FlameSettings) -> RabbitExchange:
    return RabbitExchange(names(settings).events_exchange, type=ExchangeType.TOPIC, durable=True)


def agents_exchange(settings: FlameSettings) -> RabbitExchange:
    return RabbitExchange(names(settings).agents_exchange, type=ExchangeType.DIRECT, durable=True)


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
