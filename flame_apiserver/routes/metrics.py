"""A job's training metrics: every round each task recorded, from the job's task.metrics events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from flame_apiserver.auth import for_path_user
from flame_apiserver.context import Ctx
from flame_apiserver.lookups import job_of
from schemas.events import TaskMetricsEvent, parse_event
from schemas.task import RoundMetrics

router = APIRouter(prefix="/users/{user}/jobs/{job_id}/metrics", tags=["jobs"])

PAGE = 1000  # events read per query
MAX_ROWS = 200_000  # rows in one answer (a job of 20 tasks at the agents' per-task limit)


@router.get("", response_model=list[RoundMetrics], dependencies=[for_path_user])
async def job_metrics(
    user: str,
    job_id: str,
    ctx: Ctx,
    role: Annotated[str | None, Query(max_length=200, description="only this role's tasks")] = None,
    task_id: Annotated[str | None, Query(alias="taskId", max_length=200)] = None,
) -> list[RoundMetrics]:
    """Per-round metrics of the job's tasks, by task (role, then task id) and round."""
    await job_of(ctx.jobs, user, job_id)
    roles = {t.task_id: t.role for t in await ctx.jobs.tasks_of_job(job_id)}
    rows: list[RoundMetrics] = []
    after = 0
    while len(rows) < MAX_ROWS:
        page = await ctx.jobs.events_after(job_id, after, PAGE, types=["task.metrics"])
        for body in page:
            event = parse_event(body)
            task = event.task_id or ""
            if not isinstance(event, TaskMetricsEvent) or task_id not in (None, task):
                continue
            if role is not None and roles.get(task) != role:
                continue
            rows.extend(
                RoundMetrics(
                    task_id=task,
                    role=roles.get(task, ""),
                    round=record.round,
                    metrics=record.metrics,
                    timestamp=event.occurred_at,
                )
                for record in event.payload.records
            )
        if len(page) < PAGE:
            break
        after = page[-1]["seq"]
    rows = rows[:MAX_ROWS]
    rows.sort(key=lambda r: (r.role, r.task_id, r.round))
    return rows
