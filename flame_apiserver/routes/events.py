"""A job's event log: paginated reads and a live server-sent-events stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from flame_apiserver.auth import for_path_user
from flame_apiserver.context import Ctx
from flame_apiserver.sse import stream_job_events
from flame_common.jobs_read import JobReads
from schemas.errors import NotFound

router = APIRouter(
    prefix="/users/{user}/jobs/{job_id}/events", tags=["events"], dependencies=[for_path_user]
)

After = Annotated[int, Query(ge=0, description="only events with seq greater than this")]


async def _check_owner(jobs: JobReads, user: str, job_id: str) -> None:
    """The job must belong to `user`; a deleted job's log stays readable by its owner."""
    if await jobs.job(job_id, user) is not None:
        return
    if await jobs.logged_owner(job_id) != user:
        raise NotFound(f"job '{job_id}' of user '{user}' not found")


@router.get("", response_model=list[dict[str, Any]])
async def list_events(
    user: str,
    job_id: str,
    ctx: Ctx,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Event envelopes of the job with seq > `after`, ordered by seq (at most `limit`)."""
    await _check_owner(ctx.jobs, user, job_id)
    return await ctx.jobs.events_after(job_id, after, limit)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    user: str,
    job_id: str,
    ctx: Ctx,
    after: After = 0,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> StreamingResponse:
    """SSE: `id: <seq>`, `event: <type>`, `data: <event json>`; ends once the job is done."""
    await _check_owner(ctx.jobs, user, job_id)
    start = max(after, last_event_id or 0)
    release = request.app.state.stream_slots.take(user)  # 503 when none is free
    frames = stream_job_events(ctx.jobs, job_id, start, request.app.state.stream_timing)
    return StreamingResponse(
        _releasing(frames, release),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(release),  # also when the client left before the first frame
    )


async def _releasing(
    frames: AsyncIterator[bytes], release: Callable[[], None]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in frames:
            yield chunk
    finally:
        release()
