"""Task output: agents ship their role code's stdout/stderr in chunks; its owner reads it back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response

from flame_apiserver.auth import TaskKey, check_task_key, for_path_user
from flame_apiserver.context import ApiContext, Ctx
from flame_apiserver.lookups import job_of, task_of
from flame_apiserver.ports import Contended, TaskLogSlice
from flame_apiserver.routes.agents import sent_key
from schemas.errors import Conflict, NotFound, TooLarge
from schemas.states import JobState
from schemas.task import LOG_ENDED_HEADER, LOG_NEXT_HEADER, LOG_START_HEADER, MAX_LOG_CHUNK

MAX_OFFSET = 1 << 50  # bytes into a task's output: far past any real log, and exact in JSON
MAX_READ = 1024 * 1024  # bytes in one read
MAX_WAIT = 30.0  # seconds a read may wait for new bytes (long poll)

agent_router = APIRouter(prefix="/jobs", tags=["agents"])
router = APIRouter(
    prefix="/users/{user}/jobs/{job_id}/tasks/{task_id}/logs",
    tags=["jobs"],
    dependencies=[for_path_user],
)


@agent_router.post("/{job_id}/{task_id}/log")
async def ship_task_log(
    request: Request,
    job_id: str,
    task_id: str,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="where the body's bytes go")],
    key: TaskKey = None,
) -> dict[str, int]:
    """Bytes of the task's output from `offset` (body, at most 256 KiB); header
    `X-Flame-Task-Key` must be the task's key (401 missing or wrong). Idempotent: bytes already
    stored are skipped. Answers `{"next": <offset past the last stored byte>}`."""
    sent = sent_key(request, key)
    stored = await ctx.task_keys.key(job_id, task_id)
    if stored is None:
        raise NotFound(f"task '{task_id}' of job '{job_id}' not found")
    check_task_key(task_id, stored, sent)
    data = await request.body()
    if len(data) > MAX_LOG_CHUNK:
        raise TooLarge(f"a log chunk holds at most {MAX_LOG_CHUNK} bytes, not {len(data)}")
    keep = ctx.settings.max_task_log_bytes
    try:
        end = await ctx.resources.append_task_log(job_id, task_id, offset, data, keep)
    except Contended as exc:
        raise Conflict(f"concurrent appends to the log of task '{task_id}'; retry") from exc
    return {"next": end}


@dataclass(frozen=True)
class _Read:
    found: TaskLogSlice
    ended: bool  # the task ended and nothing is stored past `found`


async def _read(ctx: ApiContext, job_id: str, task_id: str, offset: int, limit: int) -> _Read:
    # the task's state first: once it is terminal, every byte its agent shipped is stored
    task = await task_of(ctx.jobs, job_id, task_id)
    found = await ctx.resources.task_log(job_id, task_id, offset, limit)
    return _Read(found, JobState(task.state).is_terminal and found.next >= found.end)


@router.get("", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def task_logs(
    request: Request,
    user: str,
    job_id: str,
    task_id: str,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_READ)] = MAX_READ,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for bytes past `offset`")
    ] = 0,
) -> Response:
    """The task's output from `offset` (its role code's stdout and stderr, as its agent shipped
    them; the apiserver keeps the last FLAME_MAX_TASK_LOG_BYTES). Headers: `X-Flame-Log-Start`
    (offset of the first byte returned: past `offset` when older bytes were dropped),
    `X-Flame-Log-Next` (the offset to ask for next) and `X-Flame-Log-Ended` (`true`: the task
    ended and nothing follows). With `wait`, an answer that would be empty waits for bytes or
    the task's end (at most `wait` seconds; one event-stream slot meanwhile)."""
    await job_of(ctx.jobs, user, job_id)
    read = await _read(ctx, job_id, task_id, offset, limit)
    if wait and not read.found.data and not read.ended:
        release = request.app.state.stream_slots.take(user)  # 503 when none is free
        poll = request.app.state.stream_timing.poll_seconds
        try:
            with anyio.move_on_after(wait):
                while not read.found.data and not read.ended:
                    await anyio.sleep(poll)
                    read = await _read(ctx, job_id, task_id, offset, limit)
        finally:
            release()
    headers = {
        LOG_START_HEADER: str(read.found.start),
        LOG_NEXT_HEADER: str(read.found.next),
        LOG_ENDED_HEADER: "true" if read.ended else "false",
        "Cache-Control": "no-cache",
    }
    return Response(read.found.data, media_type="text/plain; charset=utf-8", headers=headers)
