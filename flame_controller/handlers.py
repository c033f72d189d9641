"""FastStream handlers: the RPC command queue and the consumer of agent/deployer events."""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitQueue, RabbitRouter
from pydantic import ValidationError

from flame_common.bus import consumer_queue, events_exchange, names
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_controller.batcher import EventBatcher
from flame_controller.service import Controller
from schemas.commands import COMMAND_ADAPTER, CommandReply
from schemas.errors import BadRequest, FlameError
from schemas.events import parse_event

log = get_logger(__name__)

EVENTS_CONSUMER = "controller.events"
# Event types the controller consumes from the events exchange (one binding each).
CONSUMED = (
    "task.status_changed",
    "worker.created",
    "worker.failed",
    "agent.registered",
    "agent.lost",
)
PREFETCH = 1000  # deliveries in flight: they are batched into one write per job


async def handle_command(controller: Controller, body: Any) -> dict[str, Any]:
    """Decode and execute one command; every outcome becomes a `CommandReply`."""
    try:
        cmd = COMMAND_ADAPTER.validate_python(body)
    except ValidationError as exc:
        reply = CommandReply.failure(BadRequest(f"malformed command: {exc.errors()[0]['msg']}"))
        return reply.model_dump(mode="json")
    try:
        reply = CommandReply.success(await controller.execute(cmd))
    except FlameError as exc:
        reply = CommandReply.failure(exc)
    except Exception as exc:  # a bug or an unavailable store: say so, keep serving
        log.exception("command failed", kind=cmd.kind)
        reply = CommandReply.failure(FlameError(f"internal error: {type(exc).__name__}"))
    return reply.model_dump(mode="json")


def build_router(
    settings: FlameSettings, controller: Controller, batcher: EventBatcher
) -> RabbitRouter:
    router = RabbitRouter()

    @router.subscriber(RabbitQueue(names(settings).command_queue, durable=True))
    async def on_command(body: dict[str, Any]) -> dict[str, Any]:
        return await handle_command(controller, body)

    @router.subscriber(
        consumer_queue(settings, EVENTS_CONSUMER, CONSUMED[0]),
        events_exchange(settings),
        channel=Channel(prefetch_count=PREFETCH),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_event(body: dict[str, Any]) -> None:
        try:
            event = parse_event(body)
        except ValidationError as exc:
            log.warning("undecodable event dropped", error=str(exc.errors()[0]["msg"]))
            return
        if not event.job_id:
            log.warning("event without job id dropped", event_id=event.id, type=event.type)
            return
        await batcher.submit(event)

    return router


async def bind_consumed(settings: FlameSettings, broker: Any) -> None:
    """Bind the controller's durable event queue to every consumed event type."""
    queue = await broker.declare_queue(consumer_queue(settings, EVENTS_CONSUMER, CONSUMED[0]))
    exchange = await broker.declare_exchange(events_exchange(settings))
    for routing_key in CONSUMED:
        await queue.bind(exchange, routing_key=routing_key)
