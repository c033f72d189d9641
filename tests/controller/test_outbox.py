"""The outbox publishes every appended event at least once: broker faults, unroutable events,
and events appended by a controller that died before publishing them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import aio_pika
import httpx
import pytest
from bson import ObjectId

from flame_common.deadletters import peek
from flame_common.settings import FlameSettings
from flame_controller import decide as d
from flame_controller.app import running_controller
from flame_controller.deployers.service import WATCHED as DEPLOYER_WATCHED
from flame_controller.memory import MemoryJobStore
from flame_controller.mongo import MongoCatalog, MongoJobStore
from flame_controller.outbox import ROUTED, UNROUTABLE, OutboxRelay
from flame_controller.planning import Planner, new_keys
from flame_notifier.app import WATCHED as NOTIFIER_WATCHED
from schemas.events import (
    EventBase,
    JobDeleted,
    JobDeletedEvent,
    JobStateChanged,
    JobStateChangedEvent,
    WorkerRequested,
    WorkerRequestedEvent,
)
from schemas.states import JobState
from tests.controller.conftest import mnist, seed_example
from tests.support.tap import EventTap, event_tap
from tests.support.wait import eventually


def _events(job_id: str, count: int) -> list[EventBase]:
    """`count` events of a job as the controller appends them (seq 1..count)."""
    return [
        JobStateChangedEvent(
            payload=JobStateChanged(from_state=JobState.READY, to_state=JobState.STARTING),
            job_id=job_id,
            seq=seq,
            source="controller",
        )
        for seq in range(1, count + 1)
    ]


class Store(MemoryJobStore):
    """The memory adapter holding loose events (the relay reads `pending`, sets `published`)."""

    def __init__(self, events: Sequence[EventBase]) -> None:
        super().__init__(2.0)
        self._add(events, observed=frozenset())

    async def published(self) -> bool:
        return not await self.pending()


@pytest.fixture
async def connection(
    settings: FlameSettings,
) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    name = f"test-outbox-{uuid.uuid4().hex[:8]}"
    conn = await aio_pika.connect_robust(
        settings.rabbit_url, client_properties={"connection_name": name}
    )
    yield conn
    await conn.close()


@pytest.fixture
async def tap(settings: FlameSettings) -> AsyncIterator[EventTap]:
    async with event_tap(settings) as t:
        yield t


async def _running(relay: OutboxRelay) -> asyncio.Task[None]:
    return asyncio.create_task(relay.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _all_seen(tap: EventTap, events: Sequence[EventBase]) -> None:
    wanted = {e.id for e in events}
    await eventually(
        lambda: wanted <= {e.id for e in tap.events},
        timeout=30,
        what=lambda: f"{len(wanted - {e.id for e in tap.events})} of {len(wanted)} events",
    )


async def _kill_connection(settings: FlameSettings, name: str) -> None:
    """Close a client connection from the broker's side (management API), as a broker restart
    would."""
    async with httpx.AsyncClient(base_url=settings.rabbit_admin_url, timeout=10) as http:

        async def listed() -> bool:
            found = (
                await http.get("api/connections", params={"columns": "name,client_properties"})
            ).json()
            return any(c["client_properties"].get("connection_name") == name for c in found)

        await eventually(listed, timeout=20, interval=0.5, what=f"connection {name} listed")
        for c in (
            await http.get("api/connections", params={"columns": "name,client_properties"})
        ).json():
            if c["client_properties"].get("connection_name") == name:
                response = await http.delete(f"api/connections/{c['name']}")
                assert response.status_code in (204, 404), response.text


async def test_events_published_while_the_broker_drops_the_connection_are_all_delivered(
    settings: FlameSettings,
    connection: aio_pika.abc.AbstractRobustConnection,
    tap: EventTap,
) -> None:
    job_id = str(ObjectId())
    before, during = _events(job_id, 50), _events(job_id, 200)
    store = Store([*before, *during])
    relay = OutboxRelay(settings, store)
    await relay.open(connection)
    task = await _running(relay)
    try:
        relay.enqueue(before)
        await _all_seen(tap, before)
        name = connection.kwargs["client_properties"]["connection_name"]
        await _kill_connection(settings, name)
        for i in range(0, len(during), 20):  # handed over while the connection is gone
            relay.enqueue(during[i : i + 20])
            await asyncio.sleep(0)
        await _all_seen(tap, during)
        await eventually(store.published, timeout=10, what="every event marked published")
    finally:
        await _stop(task)


class FlakyRelay(OutboxRelay):
    """A relay whose first `failures` publish attempts fail before reaching the broker."""

    failures = 3
    attempts = 0

    async def _ready(self):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"injected failure {self.attempts}")
        return await super()._ready()


async def test_publishes_failing_several_times_are_retried_in_order(
    settings: FlameSettings,
    connection: aio_pika.abc.AbstractRobustConnection,
    tap: EventTap,
) -> None:
    events = _events(str(ObjectId()), 30)
    store = Store(events)
    relay = FlakyRelay(settings, store)
    await relay.open(connection)
    task = await _running(relay)
    try:
        relay.enqueue(events)
        await _all_seen(tap, events)
        assert relay.attempts == FlakyRelay.failures + 1
        assert [e.id for e in tap.events] == [e.id for e in events]  # in log order, once
        await eventually(store.published, timeout=10, what="every event marked published")
    finally:
        await _stop(task)


async def test_a_closed_channel_is_reopened_and_nothing_is_lost(
    settings: FlameSettings,
    connection: aio_pika.abc.AbstractRobustConnection,
    tap: EventTap,
) -> None:
    events = _events(str(ObjectId()), 40)
    store = Store(events)
    relay = OutboxRelay(settings, store)
    await relay.open(connection)
    task = await _running(relay)
    try:
        relay.enqueue(events[:10])
        await _all_seen(tap, events[:10])
        assert relay._channel is not None
        await relay._channel.close()  # the fault: the publishing channel is gone
        relay.enqueue(events[10:])
        await _all_seen(tap, events)
        await eventually(store.published, timeout=10, what="every event marked published")
    finally:
        await _stop(task)


async def test_an_unroutable_event_a_service_consumes_is_dead_lettered(
    settings: FlameSettings, connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    job_id = str(ObjectId())
    request = WorkerRequestedEvent(
        payload=WorkerRequested(compute_id="default", task_ids=["t1"]),
        job_id=job_id,
        seq=1,
        source="controller",
    )
    nobody = JobDeletedEvent(
        payload=JobDeleted(user_id="alice"), job_id=job_id, seq=2, source="controller"
    )
    store = Store([request, nobody])
    relay = OutboxRelay(settings, store)
    await relay.open(connection)  # no deployer ever declared its queue in this namespace
    assert await relay.republish_pending() == 2
    letters = await peek(settings, 10)
    assert [(x.message_id, x.reason, x.routing_key) for x in letters] == [
        (request.id, UNROUTABLE, "worker.requested")
    ]
    assert await store.published()  # job.deleted has no consumer: not mandatory, nothing returned


def test_every_type_the_services_consume_is_routed() -> None:
    assert set(DEPLOYER_WATCHED) | set(NOTIFIER_WATCHED) <= ROUTED


async def test_events_appended_by_a_controller_that_died_are_published_at_start(
    settings: FlameSettings, db: None, tap: EventTap
) -> None:
    await seed_example(mnist())
    store = MongoJobStore(settings.stop_grace_seconds)
    job_id = str(ObjectId())
    spec, planned = await Planner(settings, MongoCatalog()).plan(
        job_id, "alice", mnist().job_spec(job_id)
    )
    events, folded = d.decide_folded(None, d.Create(job_id, "alice", spec, planned))
    events = [e.model_copy(update={"seq": i}) for i, e in enumerate(events, 1)]
    # appended, then the process died: the relay never saw them
    await store.create(replace(folded, last_seq=len(events)), events, planned, new_keys(planned))
    assert len(await store.pending()) == len(events)

    async with running_controller(settings):
        await _all_seen(tap, events)
        assert [e.id for e in tap.events[: len(events)]] == [e.id for e in events]
        assert await store.pending() == []
