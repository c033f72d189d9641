"""Computes (one per deployer/cluster): registration, listing, key-checked deployment views."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from flame_apiserver.auth import Registrar
from flame_apiserver.context import Ctx
from flame_apiserver.lookups import any_job
from flame_apiserver.ports import AlreadyExists, ComputeRecord, Resources
from schemas.compute import ComputeSpec, ComputeStatus, DeploymentConfig, DeploymentStatus
from schemas.errors import Conflict, NotFound, Unauthorized
from schemas.states import AgentState, ComputeState

router = APIRouter(prefix="/computes", tags=["computes"])

ApiKey = Annotated[str | None, Header(alias="X-API-KEY", description="the compute's api key")]


def _now_ms() -> datetime:
    """Now, at MongoDB's millisecond precision (so replies equal what is read back later)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _status(doc: ComputeRecord) -> ComputeStatus:
    return ComputeStatus(
        compute_id=doc.compute_id,
        state=ComputeState(doc.state),
        registered_at=doc.registered_at,
        updated_at=doc.updated_at,
    )


def _public_spec(doc: ComputeRecord) -> dict[str, Any]:
    spec = ComputeSpec(
        compute_id=doc.compute_id, region=doc.region, admin_id=doc.admin_id, managed=doc.managed
    )
    return spec.wire(exclude={"api_key"})


async def authorized_compute(
    resources: Resources, compute_id: str, api_key: str | None
) -> ComputeRecord:
    """The compute, if `api_key` is its key; 401 on a missing or wrong key, 404 if unknown."""
    if not api_key:
        raise Unauthorized("header X-API-KEY with the compute's api key is required")
    doc = await resources.compute(compute_id)
    if doc is None:
        raise NotFound(f"compute '{compute_id}' is not registered")
    if not doc.api_key or not secrets.compare_digest(doc.api_key.encode(), api_key.encode()):
        raise Unauthorized(f"wrong api key for compute '{compute_id}'")
    return doc


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ComputeStatus)
async def register_compute(
    body: ComputeSpec, response: Response, _: Registrar, ctx: Ctx
) -> ComputeStatus:
    """Register a compute (201; admin or compute-registration token). Registering again with
    the same api key is idempotent: 200 with the original registration (region/adminId/managed
    refreshed); another key is a 409."""
    existing = await ctx.resources.compute(body.compute_id)
    if existing is None:
        now = _now_ms()
        doc = ComputeRecord(
            registered_at=now,
            updated_at=now,
            compute_id=body.compute_id,
            region=body.region,
            admin_id=body.admin_id,
            api_key=body.api_key,
            managed=body.managed,
        )
        try:
            await ctx.resources.add_compute(doc)
        except AlreadyExists:
            existing = await ctx.resources.compute(body.compute_id)
        else:
            await ctx.announce(
                "compute.registered", body.admin_id, body.compute_id, region=body.region
            )
            return _status(doc)
    assert existing is not None
    if not secrets.compare_digest(existing.api_key.encode(), body.api_key.encode()):
        raise Conflict(
            f"compute id '{body.compute_id}' is already in use; use a different computeId"
        )
    refreshed = await ctx.resources.update_compute(
        body.compute_id,
        {
            "region": body.region,
            "admin_id": body.admin_id,
            "managed": body.managed,
            "updated_at": _now_ms(),
        },
    )
    response.status_code = status.HTTP_200_OK
    return _status(refreshed or existing)


@router.get("", response_model=list[dict[str, Any]])
async def list_computes(
    _: Registrar, ctx: Ctx, adminId: Annotated[str, Query(min_length=1)]
) -> list[dict[str, Any]]:
    """Computes of one admin (admin or compute-registration token); api keys are never
    returned."""
    return [_public_spec(d) for d in await ctx.resources.computes_of(adminId)]


@router.get("/{compute_id}", response_model=ComputeStatus)
async def get_compute(compute_id: str, ctx: Ctx, api_key: ApiKey = None) -> ComputeStatus:
    return _status(await authorized_compute(ctx.resources, compute_id, api_key))


@router.get("/{compute_id}/deployments/{job_id}/config", response_model=DeploymentConfig)
async def deployment_config(
    compute_id: str, job_id: str, ctx: Ctx, api_key: ApiKey = None
) -> DeploymentConfig:
    """Task ids and keys of the job's tasks placed on this compute (X-API-KEY required)."""
    await authorized_compute(ctx.resources, compute_id, api_key)
    await any_job(ctx.jobs, job_id)
    tasks = await ctx.jobs.tasks_of_job(job_id, compute_id=compute_id)
    return DeploymentConfig(job_id=job_id, agent_kvs={t.task_id: t.key for t in tasks})


@router.put("/{compute_id}/deployments/{job_id}/status", response_model=DeploymentStatus)
async def put_deployment_status(
    compute_id: str, job_id: str, body: dict[str, AgentState], ctx: Ctx, api_key: ApiKey = None
) -> DeploymentStatus:
    """Record the deployer's per-task agent states (replaces the stored map)."""
    await authorized_compute(ctx.resources, compute_id, api_key)
    statuses = {task: state.value for task, state in body.items()}
    await ctx.resources.put_deployment(job_id, compute_id, statuses)
    return DeploymentStatus(job_id=job_id, compute_id=compute_id, agent_statuses=body)


@router.get("/{compute_id}/deployments/{job_id}/status", response_model=DeploymentStatus)
async def get_deployment_status(
    compute_id: str, job_id: str, ctx: Ctx, api_key: ApiKey = None
) -> DeploymentStatus:
    await authorized_compute(ctx.resources, compute_id, api_key)
    statuses = await ctx.resources.deployment(job_id, compute_id)
    if statuses is None:
        raise NotFound(f"no deployment of job '{job_id}' on compute '{compute_id}'")
    return DeploymentStatus(
        job_id=job_id,
        compute_id=compute_id,
        agent_statuses={k: AgentState(v) for k, v in statuses.items()},
    )
