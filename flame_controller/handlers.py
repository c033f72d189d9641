"""RPC commands: decode and run one (`handle_command`), and find the job a command is about."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError

from flame_common import metrics
from flame_common.logs import get_logger
from flame_controller.service import Controller
from schemas.commands import COMMAND_ADAPTER, CommandReply
from schemas.errors import BadRequest, FlameError

log = get_logger(__name__)


async def handle_command(controller: Controller, body: bytes) -> dict[str, Any]:
    """Decode and execute one command (JSON); every outcome becomes a `CommandReply`."""
    started = time.perf_counter()
    try:
        cmd = COMMAND_ADAPTER.validate_json(body)
    except ValidationError as exc:
        reply = CommandReply.failure(BadRequest(f"malformed command: {exc.errors()[0]['msg']}"))
        metrics.timed(metrics.COMMAND_SECONDS, "", "error", time.perf_counter() - started)
        return reply.model_dump(mode="json")
    outcome = "error"
    try:
        reply = CommandReply.success(await controller.execute(cmd))
        outcome = "ok"
    except FlameError as exc:
        reply = CommandReply.failure(exc)
    except Exception as exc:  # a bug or an unavailable store: say so, keep serving
        log.exception("command failed", kind=cmd.kind)
        reply = CommandReply.failure(FlameError(f"internal error: {type(exc).__name__}"))
    metrics.timed(metrics.COMMAND_SECONDS, cmd.kind, outcome, time.perf_counter() - started)
    return reply.model_dump(mode="json")


def command_job(body: bytes) -> str | None:
    """The existing job a command is about; None for `job.create` (any controller may create a
    job: nobody else writes a job id nobody knows yet) and for a body that does not decode
    (answered as malformed wherever it runs)."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    job_id = raw.get("job_id") if isinstance(raw, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None
