"""Wiring of the controller: MongoDB, handlers, outbox relay, timers (`running_controller`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from flame_common.bus import make_broker
from flame_common.db import init_db
from flame_common.documents import JobDoc
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_controller.consumer import EventConsumer
from flame_controller.handlers import build_router
from flame_controller.outbox import OutboxRelay
from flame_controller.service import Controller
from flame_controller.timers import run_timers
from schemas.states import TERMINAL_STATES

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def running_controller(settings: FlameSettings) -> AsyncIterator[Controller]:
    """Start the controller (consumers, outbox, timers); yields it; shuts down cleanly."""
    client = await init_db(settings)
    broker = make_broker(settings)
    relay = OutboxRelay(settings)
    controller = Controller(settings, relay.enqueue)
    consumer = EventConsumer(settings, controller.observe)
    broker.include_router(build_router(settings, controller))
    workers: list[asyncio.Task[None]] = []
    amqp: AbstractRobustConnection | None = None
    try:
        await broker.connect()
        # Hot paths (events in, outbox out) use aio-pika/aiormq directly; FastStream serves RPC.
        amqp = await aio_pika.connect_robust(settings.rabbit_url)
        await consumer.start(amqp)  # deliveries wait in its inbox until it runs, after recovery
        await relay.open(amqp)
        await relay.republish_pending()
        await controller.recover(await _open_jobs())
        workers = [
            asyncio.create_task(relay.run(), name="outbox"),
            asyncio.create_task(consumer.run(), name="events"),
            asyncio.create_task(run_timers(controller, settings.tick_seconds), name="timers"),
        ]
        await broker.start()
        log.info("controller started", namespace=settings.namespace)
        yield controller
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.drained(), timeout=5)
    finally:
        await broker.stop()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if amqp is not None:  # unacked deliveries go back to the queue
            await amqp.close()
        await client.close()
        log.info("controller stopped")


async def _open_jobs() -> list[str]:
    """Jobs that may still change: replayed at start so projections and deadlines are current."""
    finished = [s.value for s in TERMINAL_STATES]
    cursor = JobDoc.get_pymongo_collection().find({"state": {"$nin": finished}}, {"job_id": 1})
    return [raw["job_id"] async for raw in cursor]
