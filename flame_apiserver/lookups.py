"""Finders shared by the routes: one merged filter per query, NotFound when absent."""

from __future__ import annotations

from flame_common.documents import DesignDoc, JobDoc, TaskDoc
from schemas.errors import NotFound


async def design_of(user: str, design_id: str) -> DesignDoc:
    doc = await DesignDoc.find_one({"user_id": user, "design_id": design_id})
    if doc is None:
        raise NotFound(f"design '{design_id}' of user '{user}' not found")
    return doc


async def job_of(user: str, job_id: str) -> JobDoc:
    doc = await JobDoc.find_one({"job_id": job_id, "user_id": user})
    if doc is None:
        raise NotFound(f"job '{job_id}' of user '{user}' not found")
    return doc


async def task_of(job_id: str, task_id: str) -> TaskDoc:
    doc = await TaskDoc.find_one({"job_id": job_id, "task_id": task_id})
    if doc is None:
        raise NotFound(f"task '{task_id}' of job '{job_id}' not found")
    return doc
