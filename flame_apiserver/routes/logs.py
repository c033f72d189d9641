"""Task output: agents ship their role code's stdout/stderr in chunks; its owner reads it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response

from flame_apiserver.auth import TaskKey, check_task_key, for_path_user
from flame_apiserver.context import ApiContext, Ctx
from flame_apiserver.lookups import job_of, task_of
from flame_apiserver.ports import Contended, TaskLogSlice
from flame_apiserver.routes.agents import sent_key
from flame_apiserver.sse import TooManyStreams
from flame_common.jobs_read import TaskRecord
from schemas.errors import Conflict, NotFound, TooLarge
from schemas.states import JobState
from schemas.task import (
    FINAL_LOG_FLUSH,
    LOG_ENDED_HEADER,
    LOG_NEXT_HEADER,
    LOG_START_HEADER,
    MAX_LOG_CHUNK,
)

MAX_OFFSET = 1 << 50  # bytes into a task's output: far past any real log, and exact in JSON
MAX_READ = 1024 * 1024  # bytes in one read
MAX_WAIT = 30.0  # seconds a read may wait for new bytes (long poll)
CLOCK_SLACK = 5.0  # seconds the agent's clock (it stamps the final status) may be behind ours

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
    # seconds in which the rest of an ended task's output may still arrive (0: none expected)
    arriving: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.found.data and not self.ended


async def _read(ctx: ApiContext, job_id: str, task_id: str, offset: int, limit: int) -> _Read:
    # the task's state first: once it is terminal, the rest of its output is in its final
    # status's tail, on its way (the status says how much there is) or given up on
    # (FINAL_LOG_FLUSH after that status)
    task = await task_of(ctx.jobs, job_id, task_id)
    found = await ctx.resources.task_log(job_id, task_id, offset, limit)
    if not JobState(task.state).is_terminal:
        return _Read(found, False)
    size = task.log_size
    if size is None or found.end >= size:
        return _Read(found, found.next >= found.end)
    if found.next >= found.end and (completed := _from_tail(task, size, found, offset, limit)):
        return _Read(completed, completed.next >= size)
    left = FINAL_LOG_FLUSH + CLOCK_SLACK - (datetime.now(UTC) - task.timestamp).total_seconds()
    if left <= 0:
        return _Read(found, found.next >= found.end)
    return _Read(found, False, arriving=left)


def _from_tail(
    task: TaskRecord, size: int, found: TaskLogSlice, offset: int, limit: int
) -> TaskLogSlice | None:
    """`found` (which reaches the end of what is stored) completed from the final status's
    tail, when that tail is the output's last bytes and everything before it is stored."""
    tail, at = task.log.encode(), task.log_tail_at
    if at is None or at + len(tail) != size or found.end < at:
        return None
    pos = found.next if found.data else offset
    if pos < at:  # a gap in what is stored
        return None
    more = tail[pos - at :][: limit - len(found.data)]
    start = found.start if found.data else pos
    return TaskLogSlice(start=start, data=found.data + more, end=size)


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
    the task's end (at most `wait` seconds; one event-stream slot meanwhile). The last bytes of
    an ended task come from its final status's tail, or are waited for even without `wait`
    (its agent ships them alongside that status, for FINAL_LOG_FLUSH seconds at most), so a
    read after the end gets them all."""
    await job_of(ctx.jobs, user, job_id)
    read = await _read(ctx, job_id, task_id, offset, limit)
    if read.empty and (wait or read.arriving):
        slots = request.app.state.stream_slots
        try:
            release = slots.take(user)
        except TooManyStreams:
            if wait:
                raise  # 503: an asked-for wait needs a slot
            release = None  # the ended task's last bytes are not waited for then
        if release is not None:
            poll = request.app.state.stream_timing.poll_seconds
            try:
                with anyio.move_on_after(max(wait, read.arriving)):
                    while read.empty:
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
