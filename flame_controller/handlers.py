"""FastStream handler of the RPC command queue (events are consumed by `consumer.py`)."""

from __future__ import annotations

from typing import Any

from faststream.rabbit import RabbitRouter
from pydantic import ValidationError

from flame_common.bus import rabbit_queue
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_common.topology import topology
from flame_controller.service import Controller
from schemas.commands import COMMAND_ADAPTER, CommandReply
from schemas.errors import BadRequest, FlameError

log = get_logger(__name__)


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


def build_router(settings: FlameSettings, controller: Controller) -> RabbitRouter:
    router = RabbitRouter()

    @router.subscriber(rabbit_queue(topology(settings).commands))
    async def on_command(body: dict[str, Any]) -> dict[str, Any]:
        return await handle_command(controller, body)

    return router
