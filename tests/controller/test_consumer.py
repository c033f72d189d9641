"""EventConsumer on real RabbitMQ: per-job batches, ack after the write, requeue on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
import pytest

from flame_common.bus import make_broker, publish_event
from flame_common.settings import FlameSettings
from flame_controller.consumer import EventConsumer
from schemas.events import (
    EventBase,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    WorkerCreated,
    WorkerCreatedEvent,
)
from schemas.states import JobState
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


async def test_batches_in_order_ack_after_write_and_requeue_failed_job(
    settings: FlameSettings,
) -> None:
    written: dict[str, list[str]] = {}
    failures = {"job-b": 1}  # job-b's first write fails: its messages must come back

    async def handle(job_id: str, events: Sequence[EventBase]) -> None:
        if failures.get(job_id, 0) > 0:
            failures[job_id] -= 1
            raise RuntimeError("store unavailable")
        written.setdefault(job_id, []).extend(e.id for e in events)

    conn = await aio_pika.connect_robust(settings.rabbit_url)
    consumer = EventConsumer(settings, handle)
    await consumer.start(conn)
    broker = make_broker(settings)
    await broker.connect()
    sent: dict[str, list[str]] = {"job-a": [], "job-b": []}
    for i in range(40):
        job_id = "job-a" if i % 2 else "job-b"
        running = TaskStatusChanged(state=JobState.RUNNING)
        event = TaskStatusChangedEvent(payload=running, job_id=job_id, task_id="t")
        await publish_event(broker, settings, event)
        sent[job_id].append(event.id)
    created = WorkerCreatedEvent(payload=WorkerCreated(compute_id="c"))
    await publish_event(broker, settings, created)
    runner = asyncio.create_task(consumer.run())
    try:
        await eventually(
            lambda: sorted(written.get("job-b", [])) == sorted(sent["job-b"]),
            what="every job-b event written",
        )
        assert failures["job-b"] == 0
        assert written["job-a"] == sent["job-a"]  # delivery order, each event written once
        assert len(written["job-b"]) == len(sent["job-b"])  # requeued, then written once
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await broker.stop()
    # Everything was settled: nothing is left unacked (redelivered) after the consumer closes.
    await conn.close()
    probe = await aio_pika.connect_robust(settings.rabbit_url)
    async with probe:
        channel = await probe.channel()
        queue = await channel.declare_queue(f"{settings.namespace}.controller.events", passive=True)
        assert queue.declaration_result.message_count == 0
        await queue.delete(if_unused=False, if_empty=False)


async def test_a_store_outage_is_retried_in_place_and_burns_no_delivery_attempt(
    settings: FlameSettings,
) -> None:
    from pymongo.errors import AutoReconnect

    settings = settings.model_copy(update={"delivery_limit": 1})  # any requeue would dead-letter
    calls: list[int] = []

    async def handle(job_id: str, events: Sequence[EventBase]) -> None:
        calls.append(len(events))
        if len(calls) <= 3:
            raise AutoReconnect("connection refused")  # the store is away, three times

    conn = await aio_pika.connect_robust(settings.rabbit_url)
    consumer = EventConsumer(settings, handle, transient=(AutoReconnect,))
    await consumer.start(conn)
    broker = make_broker(settings)
    await broker.connect()
    running = TaskStatusChanged(state=JobState.RUNNING)
    await publish_event(
        broker, settings, TaskStatusChangedEvent(payload=running, job_id="job-a", task_id="t")
    )
    runner = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(calls) >= 4, what="a fourth write attempt")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await broker.stop()
        await conn.close()
    assert calls == [1, 1, 1, 1]  # the same delivery, written on the fourth try
    probe = await aio_pika.connect_robust(settings.rabbit_url)
    async with probe:
        channel = await probe.channel()
        queue = await channel.declare_queue(f"{settings.namespace}.controller.events", passive=True)
        assert queue.declaration_result.message_count == 0  # acked, not returned
        dead = await channel.declare_queue(f"{settings.namespace}.dead-letters", passive=True)
        assert dead.declaration_result.message_count == 0  # and never dead-lettered
        await queue.delete(if_unused=False, if_empty=False)


async def test_a_store_outage_longer_than_the_bound_gives_the_batch_back(
    settings: FlameSettings,
) -> None:
    from pymongo.errors import AutoReconnect

    settings = settings.model_copy(update={"store_outage_seconds": 0.3})
    calls: list[str] = []

    async def handle(job_id: str, events: Sequence[EventBase]) -> None:
        calls.append(job_id)
        if job_id == "job-bad":
            raise ValueError("cannot fold")  # not an outage: no retry in place
        raise AutoReconnect("connection refused")  # the store never comes back

    consumer = EventConsumer(settings, handle, transient=(AutoReconnect,))
    running = TaskStatusChanged(state=JobState.RUNNING)
    groups: dict[str, list[EventBase]] = {
        job: [TaskStatusChangedEvent(payload=running, job_id=job, task_id="t")]
        for job in ("job-away", "job-bad")
    }
    failed = await asyncio.wait_for(consumer._write(groups), 10)
    assert set(failed) == {"job-away", "job-bad"}
    assert isinstance(failed["job-away"], AutoReconnect)
    assert isinstance(failed["job-bad"], ValueError)
    assert calls.count("job-bad") == 1
    assert calls.count("job-away") >= 2  # retried in place until the bound, then given back
