"""Poison messages on the real RabbitMQ: dead-lettered after N attempts, shown by the API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
import httpx
import pytest
from structlog.testing import capture_logs

from flame_common import amqp
from flame_common.deadletters import peek
from flame_common.settings import FlameSettings
from flame_controller.consumer import EventConsumer
from schemas.deadletters import DeadLetter
from schemas.events import EventBase, parse_event
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

ATTEMPTS = 3


def _status(job_id: str) -> EventBase:
    return parse_event(
        {
            "type": "task.status_changed",
            "job_id": job_id,
            "task_id": "t1",
            "payload": {"state": "running"},
        }
    )


async def _dead_letters(settings: FlameSettings, count: int) -> list[DeadLetter]:
    async def enough() -> list[DeadLetter]:
        letters = await peek(settings, 100)
        return letters if len(letters) >= count else []

    return await eventually(enough, timeout=20, what=f"{count} dead letter(s)")


async def _run(
    settings: FlameSettings, consumer: EventConsumer, *events: EventBase
) -> list[DeadLetter]:
    """Run the consumer while the events and an undecodable body arrive; the dead letters."""
    connection = await aio_pika.connect_robust(settings.rabbit_url)
    await consumer.start(connection)
    runner = asyncio.create_task(consumer.run())
    try:
        channel = await connection.channel()
        exchange = await amqp.events_exchange(channel, settings)
        for event in events:
            await exchange.publish(amqp.event_message(event), routing_key=event.type)
        garbage = aio_pika.Message(b"{not json", message_id="garbage")
        await exchange.publish(garbage, routing_key="task.status_changed")
        return await _dead_letters(settings, 2)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await connection.close()


async def test_poison_events_end_in_the_dead_letters_and_are_listed(
    settings: FlameSettings, app_client: httpx.AsyncClient
) -> None:
    settings = settings.with_overrides(delivery_limit=ATTEMPTS, redelivery_delay=0.01)
    attempts: dict[str, int] = {}

    async def handle(job_id: str, events: Sequence[EventBase]) -> None:
        attempts[job_id] = attempts.get(job_id, 0) + 1
        if job_id == "poison":
            raise RuntimeError("this event breaks the store every time")

    consumer = EventConsumer(settings, handle)
    poison, good = _status("poison"), _status("good")
    with capture_logs() as logs:
        letters = await _run(settings, consumer, poison, good)
    assert attempts == {"poison": ATTEMPTS, "good": 1}  # tried N times; the rest went on
    logged = [e for e in logs if e["event"] == "message dead-lettered"]
    assert [e["message_ids"] for e in logged] == [[poison.id]]
    by_id = {letter.message_id: letter for letter in letters}
    assert set(by_id) == {poison.id, "garbage"}
    queue = f"{settings.namespace}.controller.events"
    assert (by_id[poison.id].reason, by_id[poison.id].queue) == ("delivery_limit", queue)
    assert by_id[poison.id].routing_key == "task.status_changed"
    assert parse_event(by_id[poison.id].body).id == poison.id
    assert (by_id["garbage"].reason, by_id["garbage"].body) == ("rejected", "{not json")

    response = await app_client.get("/deadletters", params={"limit": 10})
    assert response.status_code == 200, response.text
    listed = [DeadLetter.model_validate(d) for d in response.json()]
    assert [d.message_id for d in listed] == [d.message_id for d in letters]  # still there
    one = await app_client.get("/deadletters", params={"limit": 1})
    assert len(one.json()) == 1


async def test_dead_letters_of_an_empty_namespace(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/deadletters")
    assert response.status_code == 200 and response.json() == []
    assert (await app_client.get("/deadletters", params={"limit": 0})).status_code == 400
