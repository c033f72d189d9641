"""Finders shared by the routes: a port lookup, NotFound when absent."""

from __future__ import annotations

from flame_apiserver.ports import DesignRecord, Resources
from flame_common.jobs_read import JobReads, JobRecord, TaskRecord
from schemas.errors import NotFound


async def design_of(resources: Resources, user: str, design_id: str) -> DesignRecord:
    design = await resources.design(user, design_id)
    if design is None:
        raise NotFound(f"design '{design_id}' of user '{user}' not found")
    return design


async def job_of(jobs: JobReads, user: str, job_id: str) -> JobRecord:
    job = await jobs.job(job_id, user)
    if job is None:
        raise NotFound(f"job '{job_id}' of user '{user}' not found")
    return job


async def any_job(jobs: JobReads, job_id: str) -> JobRecord:
    job = await jobs.job(job_id)
    if job is None:
        raise NotFound(f"job '{job_id}' not found")
    return job


async def task_of(jobs: JobReads, job_id: str, task_id: str) -> TaskRecord:
    task = await jobs.task(job_id, task_id)
    if task is None:
        raise NotFound(f"task '{task_id}' of job '{job_id}' not found")
    return task
