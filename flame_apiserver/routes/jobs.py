"""Jobs and tasks of a user: reads from the controller's projections, writes as controller RPC."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, status

from flame_apiserver.auth import for_path_user
from flame_apiserver.context import Ctx
from flame_apiserver.lookups import job_of, task_of
from flame_apiserver.views import job_spec, job_status, task_config, task_info
from schemas.commands import CreateJob, DeleteJob, StartJob, StopJob, UpdateJob
from schemas.errors import Forbidden, Invalid, NotFound
from schemas.job import JobSpec, JobStatus
from schemas.states import JobState
from schemas.task import TaskInfo

router = APIRouter(prefix="/users/{user}/jobs", tags=["jobs"], dependencies=[for_path_user])

# The caller's key of a job command: a retry with the same key is run once (first answer again).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="the same key on a retry: the command runs once, the retry gets its answer",
    ),
]


async def _check_datasets(ctx: Ctx, user: str, spec: JobSpec) -> None:
    """A job may use only its owner's datasets and public ones (the controller checks again)."""
    wanted = {d for entry in spec.data_spec for ids in entry.dataset_groups.values() for d in ids}
    if not wanted:
        return
    found = await ctx.resources.datasets_by_id(sorted(wanted))
    for dataset_id in sorted(wanted):
        doc = found.get(dataset_id)
        if doc is None:
            raise NotFound(f"dataset '{dataset_id}' not found")
        if doc.user_id != user and not doc.is_public:
            raise Forbidden(f"dataset '{dataset_id}' is private to another user")


def _result(reply: dict[str, Any] | list[Any] | None) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobStatus)
async def create_job(
    user: str, body: JobSpec, ctx: Ctx, key: IdempotencyKey = None
) -> dict[str, Any]:
    """Create a job (the controller expands it into tasks); returns its status (`ready`)."""
    spec = body.model_copy(update={"user_id": user, "id": ""})
    await _check_datasets(ctx, user, spec)
    command = CreateJob(user_id=user, spec=spec, idempotency_key=key)
    return _result(await ctx.controller.call(command))


@router.get("", response_model=list[JobStatus])
async def list_jobs(user: str, ctx: Ctx, limit: int = 0) -> list[JobStatus]:
    return [job_status(j) for j in await ctx.jobs.jobs_of_user(user, limit)]


@router.get("/{job_id}", response_model=JobSpec)
async def get_job(user: str, job_id: str, ctx: Ctx) -> JobSpec:
    return job_spec(await job_of(ctx.jobs, user, job_id))


@router.put("/{job_id}", response_model=JobStatus)
async def update_job(
    user: str, job_id: str, body: JobSpec, ctx: Ctx, key: IdempotencyKey = None
) -> dict[str, Any]:
    """Replace the spec of a job that is not active (409 otherwise); tasks are rebuilt."""
    if body.id not in ("", job_id):
        raise Invalid(f"a job id cannot be changed (path '{job_id}', body '{body.id}')")
    spec = body.model_copy(update={"user_id": user, "id": job_id})
    await _check_datasets(ctx, user, spec)
    command = UpdateJob(user_id=user, job_id=job_id, spec=spec, idempotency_key=key)
    return _result(await ctx.controller.call(command))


@router.delete("/{job_id}", response_model=str)
async def delete_job(user: str, job_id: str, ctx: Ctx, key: IdempotencyKey = None) -> str:
    """Delete a job that is not active (409 otherwise), with its tasks."""
    await ctx.controller.call(DeleteJob(user_id=user, job_id=job_id, idempotency_key=key))
    await ctx.resources.delete_task_logs(job_id)  # its tasks' output goes with it
    return f"job '{job_id}' deleted"


@router.get("/{job_id}/status", response_model=JobStatus)
async def get_job_status(user: str, job_id: str, ctx: Ctx) -> JobStatus:
    return job_status(await job_of(ctx.jobs, user, job_id))


@router.put("/{job_id}/status", response_model=JobStatus)
async def put_job_status(
    user: str, job_id: str, body: JobStatus, ctx: Ctx, key: IdempotencyKey = None
) -> dict[str, Any]:
    """Request `starting` (start) or `stopping` (stop); the path's job id wins over the body's."""
    if body.state is JobState.STARTING:
        command: StartJob | StopJob = StartJob(user_id=user, job_id=job_id, idempotency_key=key)
    elif body.state is JobState.STOPPING:
        command = StopJob(user_id=user, job_id=job_id, idempotency_key=key)
    elif body.state is JobState.APPLYING:
        raise Invalid(
            "state 'applying' cannot be requested; change a stopped job with "
            "PUT /users/{user}/jobs/{jobId}"
        )
    else:
        raise Invalid(f"users may request only 'starting' or 'stopping', not '{body.state.value}'")
    return _result(await ctx.controller.call(command))


@router.get("/{job_id}/tasks", response_model=list[TaskInfo])
async def list_tasks(
    user: str, job_id: str, ctx: Ctx, limit: int = 0, generic: bool = False
) -> list[TaskInfo]:
    """Tasks of a job (keys hidden); `generic` is accepted for Flame clients and ignored."""
    await job_of(ctx.jobs, user, job_id)
    return [task_info(t) for t in await ctx.jobs.tasks_of_job(job_id, limit)]


@router.get("/{job_id}/tasks/{task_id}", response_model=TaskInfo)
async def get_task(user: str, job_id: str, task_id: str, ctx: Ctx) -> TaskInfo:
    await job_of(ctx.jobs, user, job_id)
    return task_info(await task_of(ctx.jobs, job_id, task_id))


@router.get("/{job_id}/tasks/{task_id}/config")
async def get_task_config(user: str, job_id: str, task_id: str, ctx: Ctx) -> dict[str, Any]:
    """The config a worker of this task receives (Flame key set, with `taskid`; never the key)."""
    await job_of(ctx.jobs, user, job_id)
    return task_config(await task_of(ctx.jobs, job_id, task_id))
