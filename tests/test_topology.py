"""The broker topology on real RabbitMQ: idempotent declarations, old queues, delivery limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelPreconditionFailed

from flame_common import amqp
from flame_common.redelivery import attempt, processing
from flame_common.settings import FlameSettings
from flame_common.topology import TopologyError, declare_queue, topology
from schemas.events import parse_event
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

TYPES = ("task.status_changed", "worker.created")


@pytest.fixture
async def connection(settings: FlameSettings) -> AsyncIterator[AbstractRobustConnection]:
    async with await aio_pika.connect_robust(settings.rabbit_url) as connection:
        yield connection


async def _routed(connection: AbstractRobustConnection, settings: FlameSettings) -> bytes:
    """Publish one event on the events exchange; what the consumer queue then holds."""
    channel = await connection.channel()
    event = parse_event({"type": TYPES[0], "job_id": "j", "payload": {"state": "running"}})
    exchange = await amqp.events_exchange(channel, settings)
    await exchange.publish(amqp.event_message(event), routing_key=event.type)
    queue = await channel.get_queue(topology(settings).names.queue("controller.events"))
    message = await queue.get(timeout=5, fail=True)
    assert message is not None
    await message.ack()
    return message.body


async def _has_new_layout(connection: AbstractRobustConnection, name: str) -> bool:
    """RabbitMQ refuses the old declaration (no arguments) of a queue of the new layout."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True)
    except ChannelPreconditionFailed as exc:
        return "inequivalent arg" in str(exc)
    return False


async def test_declaring_twice_is_idempotent(
    settings: FlameSettings, connection: AbstractRobustConnection
) -> None:
    spec = topology(settings).consumer("controller.events", TYPES)
    for _ in range(2):
        channel = await connection.channel()
        await declare_queue(channel, spec)
        await declare_queue(channel, spec)  # same channel too
    assert await _has_new_layout(connection, spec.name)
    body = await _routed(connection, settings)
    assert parse_event(body).type == TYPES[0]
    dead_letters = await (await connection.channel()).declare_queue(
        topology(settings).dead_letter_queue.name, passive=True
    )
    assert dead_letters.declaration_result.message_count == 0


async def test_an_empty_old_style_queue_is_replaced(
    settings: FlameSettings, connection: AbstractRobustConnection
) -> None:
    spec = topology(settings).consumer("controller.events", TYPES)
    channel = await connection.channel()
    old = await channel.declare_queue(spec.name, durable=True)  # the layout before dead letters
    await old.bind(await amqp.events_exchange(channel, settings), routing_key=TYPES[0])
    await declare_queue(channel, spec)  # on the same channel, which the refusal closed
    assert await _has_new_layout(connection, spec.name)
    assert parse_event(await _routed(connection, settings)).type == TYPES[0]


async def test_an_old_style_queue_with_messages_is_kept_and_named(
    settings: FlameSettings, connection: AbstractRobustConnection
) -> None:
    spec = topology(settings).consumer("notifier", TYPES)
    channel = await connection.channel()
    await channel.declare_queue(spec.name, durable=True)
    await channel.default_exchange.publish(aio_pika.Message(b"pending"), routing_key=spec.name)
    with pytest.raises(TopologyError, match=f"'{spec.name}'.* holds 1 message"):
        await declare_queue(await connection.channel(), spec)
    old = await (await connection.channel()).declare_queue(spec.name, passive=True)
    assert old.declaration_result.message_count == 1  # nothing was lost
    assert not await _has_new_layout(connection, spec.name)


async def test_a_message_failing_in_processing_is_dead_lettered_after_the_limit(
    settings: FlameSettings, connection: AbstractRobustConnection
) -> None:
    """The notifier's and deployers' consumers: `redelivery.processing` returns a failed message
    (after a delay) until the broker dead-letters it."""
    settings = settings.with_overrides(delivery_limit=3, redelivery_delay=0.01)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=4)
    queue = await amqp.consumer_queue(channel, settings, "deployer.default", list(TYPES))
    tries: list[int] = []

    async def fail(message: AbstractIncomingMessage) -> None:
        async with processing(message, settings, "deployer.default"):
            tries.append(attempt(message.headers))
            raise RuntimeError("cannot start the worker")

    await queue.consume(fail)
    event = parse_event({"type": TYPES[1], "job_id": "j", "payload": {"compute_id": "default"}})
    exchange = await amqp.events_exchange(channel, settings)
    await exchange.publish(amqp.event_message(event), routing_key=event.type)
    dead = await channel.get_queue(topology(settings).dead_letter_queue.name)
    letter = await eventually(lambda: dead.get(fail=False), what="a dead letter")
    assert letter.message_id == event.id
    assert tries == [1, 2, 3]


async def test_a_throwaway_stacks_namespace_is_deleted_with_its_partition_queues(
    rabbit_url: str,
) -> None:
    from flame_sdk.localstack import delete_namespace

    namespace = f"t{uuid.uuid4().hex[:10]}"
    layout = topology(FlameSettings(namespace=namespace))
    queues = [layout.consumer("controller.events", ("x",)), layout.controllers]
    queues += layout.partition_queues
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await declare_queue(channel, queue)
        await delete_namespace(rabbit_url, namespace)
        for queue in queues:
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await (await connection.channel()).declare_queue(queue.name, passive=True)
