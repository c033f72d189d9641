"""Endpoints for agents and deployers: key-checked task manifests, task status, a compute's jobs."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from flame_apiserver.auth import TaskKey, check_task_key, require_task_key
from flame_apiserver.codezip import role_zip
from flame_apiserver.context import Ctx
from flame_apiserver.lookups import any_job, task_of
from flame_apiserver.multipart import Part, encode_form
from flame_apiserver.routes.computes import ApiKey, authorized_compute
from flame_apiserver.views import agent_task_config, job_spec, job_status
from flame_apiserver.zipcache import ZipCache
from schemas.commands import ReportTaskStatus
from schemas.errors import BadRequest, Invalid, NotFound
from schemas.job import JobStatus
from schemas.states import AGENT_REPORTABLE_STATES
from schemas.task import TASK_KEY_HEADER, TaskStatus

router = APIRouter(prefix="/jobs", tags=["agents"])

_MANIFEST: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "parts `config` (task config JSON) and `code.zip` (the role's code)",
        "content": {"multipart/form-data": {}},
    }
}


def _role_zips(request: Request) -> ZipCache:
    """The app's cache of role zips, keyed by (job, role).

    A job pins its code revision, so its role zips never change. The key is the job, not
    (user, design, revision): revision numbers restart after the code or the design is deleted.
    """
    cache: ZipCache | None = getattr(request.app.state, "role_zips", None)
    if cache is None:
        cache = request.app.state.role_zips = ZipCache()
    return cache


RoleZips = Annotated[ZipCache, Depends(_role_zips)]


async def _build_role_zip(ctx: Ctx, job_id: str, role: str) -> bytes:
    job = await any_job(ctx.jobs, job_id)
    revision = job_spec(job).code_revision
    code = await ctx.resources.code(job.user_id, job.design_id, revision)
    if revision == 0 or code is None:
        raise NotFound(
            f"code revision {revision} of design '{job.design_id}' pinned by job '{job_id}' "
            "is not available"
        )
    return await asyncio.to_thread(role_zip, code.data, role, ctx.zip_limits)


def sent_key(request: Request, key: str | None) -> str:
    """The key of the header; a key in the URL (logs, proxies) is refused, a missing one 401."""
    if "key" in request.query_params:
        raise BadRequest(f"send the task key in header '{TASK_KEY_HEADER}', never in the URL")
    return require_task_key(key)


@router.get("/{job_id}/{task_id}/task", response_class=Response, responses=_MANIFEST)
async def task_manifest(
    request: Request, job_id: str, task_id: str, ctx: Ctx, zips: RoleZips, key: TaskKey = None
) -> Response:
    """What an agent needs to run its task; header `X-Flame-Task-Key` must be the task's key
    (401 missing or wrong).

    One task read per request; the job and its code are read once per (job, role).
    """
    sent = sent_key(request, key)
    task = await task_of(ctx.jobs, job_id, task_id)
    check_task_key(task_id, task.key, sent)
    zipped = await zips.get((job_id, task.role), lambda: _build_role_zip(ctx, job_id, task.role))
    body, content_type = encode_form(
        [
            Part("config", json.dumps(agent_task_config(task)).encode(), "application/json"),
            Part("code.zip", zipped, "application/zip"),
        ]
    )
    return Response(body, media_type=content_type)


@router.put("/{job_id}/{task_id}/task/status")
async def report_task_status(
    request: Request, job_id: str, task_id: str, body: TaskStatus, ctx: Ctx, key: TaskKey = None
) -> dict[str, Any]:
    """An agent's report (running/completed/failed/terminated), forwarded to the controller;
    header `X-Flame-Task-Key` must be the task's key (401 missing or wrong, nothing changed)."""
    sent = sent_key(request, key)
    if body.state not in AGENT_REPORTABLE_STATES:
        allowed = ", ".join(sorted(s.value for s in AGENT_REPORTABLE_STATES))
        raise Invalid(f"agents may report only {allowed}, not '{body.state.value}'")
    task = await task_of(ctx.jobs, job_id, task_id)
    check_task_key(task_id, task.key, sent)
    job = await any_job(ctx.jobs, job_id)
    command = ReportTaskStatus(user_id=job.user_id, job_id=job_id, task_id=task_id, status=body)
    reply = await ctx.controller.call(command)
    return reply if isinstance(reply, dict) else {}


@router.get("/{compute_id}", response_model=list[JobStatus])
async def compute_jobs(compute_id: str, ctx: Ctx, api_key: ApiKey = None) -> list[JobStatus]:
    """Active jobs with tasks on a compute (for its deployer; X-API-KEY required)."""
    await authorized_compute(ctx.resources, compute_id, api_key)
    statuses = [job_status(j) for j in await ctx.jobs.jobs_on_compute(compute_id)]
    return [s for s in statuses if not s.state.is_terminal]
