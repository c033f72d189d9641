"""The real services behind the apiserver's ports: MongoDB (Beanie) and RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from faststream.rabbit import RabbitBroker

from flame_apiserver.context import ApiPorts
from flame_apiserver.mongo import MongoResources
from flame_apiserver.rpc import ControllerClient
from flame_common import metrics
from flame_common.bus import events_exchange, make_broker, publish_event
from flame_common.db import init_db
from flame_common.jobs_read.mongo import MongoJobReads
from flame_common.settings import FlameSettings
from schemas.events import EventBase


class BrokerPublisher:
    """Publishes on the namespace's events exchange (routing key = event type)."""

    def __init__(self, broker: RabbitBroker, settings: FlameSettings) -> None:
        self._broker = broker
        self._settings = settings

    async def publish(self, event: EventBase) -> None:
        await publish_event(self._broker, self._settings, event)
        metrics.published("apiserver", event.type)


@asynccontextmanager
async def open_services(settings: FlameSettings) -> AsyncIterator[ApiPorts]:
    """Connect to MongoDB and RabbitMQ for as long as the context is open."""
    client = await init_db(settings, [*MongoResources.documents, *MongoJobReads.documents])
    broker = make_broker(settings)
    try:
        controller = ControllerClient(broker, settings)
        await broker.start()
        await broker.declare_exchange(events_exchange(settings))

        async def mongodb() -> None:
            await client.admin.command("ping")

        async def rabbitmq() -> None:  # our connection is up and the broker takes a new one
            if not await broker.ping(timeout=2):
                raise ConnectionError("the connection to RabbitMQ is down")
            connection = await aio_pika.connect(settings.rabbit_url, timeout=2)
            await connection.close()

        yield ApiPorts(
            resources=MongoResources(),
            jobs=MongoJobReads(),
            controller=controller,
            publisher=BrokerPublisher(broker, settings),
            probes={"mongodb": mongodb, "rabbitmq": rabbitmq},
        )
    finally:
        await broker.stop()
        await client.close()
