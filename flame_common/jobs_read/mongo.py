"""`JobReads` over the controller's Beanie collections (jobs, tasks, events); read-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beanie import Document

from flame_common.documents import EventDoc, JobDoc, TaskDoc, as_utc, maybe_utc
from flame_common.jobs_read.port import JobRecord, TaskRecord
from schemas.states import TERMINAL_STATES

_TERMINAL = sorted(s.value for s in TERMINAL_STATES)


def job_record(doc: JobDoc) -> JobRecord:
    return JobRecord(
        job_id=doc.job_id,
        user_id=doc.user_id,
        name=doc.name,
        design_id=doc.design_id,
        spec=doc.spec,
        state=doc.state,
        reason=doc.reason,
        created_at=as_utc(doc.created_at),
        started_at=maybe_utc(doc.started_at),
        updated_at=maybe_utc(doc.updated_at),
        ended_at=maybe_utc(doc.ended_at),
        last_seq=doc.last_seq,
    )


def task_record(doc: TaskDoc) -> TaskRecord:
    return TaskRecord(
        job_id=doc.job_id,
        task_id=doc.task_id,
        role=doc.role,
        key=doc.key,
        timestamp=as_utc(doc.timestamp),
        state=doc.state,
        compute_id=doc.compute_id,
        group_association=doc.group_association,
        log=doc.log,
        log_size=doc.log_size,
        log_tail_at=doc.log_tail_at,
        config=doc.config,
        broker_user=doc.broker_user,
        broker_password=doc.broker_password,
        broker_sorts=tuple(doc.broker_sorts),
    )


class MongoJobReads:
    """Queries with one merged filter dict each (nx-27017 is slow on `$and`)."""

    documents: list[type[Document]] = [JobDoc, TaskDoc, EventDoc]

    async def job(self, job_id: str, user_id: str | None = None) -> JobRecord | None:
        query = {"job_id": job_id} if user_id is None else {"job_id": job_id, "user_id": user_id}
        doc = await JobDoc.find_one(query)
        return job_record(doc) if doc else None

    async def jobs_of_user(self, user_id: str, limit: int = 0) -> list[JobRecord]:
        query = JobDoc.find({"user_id": user_id}).sort("created_at")
        return [job_record(d) for d in await (query.limit(limit) if limit > 0 else query).to_list()]

    async def jobs_on_compute(self, compute_id: str) -> list[JobRecord]:
        job_ids = await TaskDoc.get_pymongo_collection().distinct(
            "job_id", {"compute_id": compute_id}
        )
        if not job_ids:
            return []
        docs = await JobDoc.find({"job_id": {"$in": sorted(job_ids)}}).sort("created_at").to_list()
        return [job_record(d) for d in docs]

    async def count_jobs_of_design(self, user_id: str, design_id: str) -> int:
        return await JobDoc.find({"user_id": user_id, "design_id": design_id}).count()

    async def task(self, job_id: str, task_id: str) -> TaskRecord | None:
        doc = await TaskDoc.find_one({"job_id": job_id, "task_id": task_id})
        return task_record(doc) if doc else None

    async def tasks_of_job(
        self, job_id: str, limit: int = 0, compute_id: str | None = None
    ) -> list[TaskRecord]:
        query: dict[str, Any] = {"job_id": job_id}
        if compute_id is not None:
            query["compute_id"] = compute_id
        found = TaskDoc.find(query).sort("role", "task_id")
        return [
            task_record(d) for d in await (found.limit(limit) if limit > 0 else found).to_list()
        ]

    async def task_keys(self, job_id: str, task_ids: list[str]) -> dict[str, str]:
        cursor = TaskDoc.find({"job_id": job_id, "task_id": {"$in": task_ids}})
        return {t.task_id: t.key async for t in cursor}

    async def terminal_tasks(self, task_ids: list[str]) -> set[str]:
        if not task_ids:
            return set()
        cursor = TaskDoc.find({"task_id": {"$in": task_ids}, "state": {"$in": _TERMINAL}})
        return {t.task_id async for t in cursor}

    async def events_after(
        self, job_id: str, after: int, limit: int, types: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"job_id": job_id, "seq": {"$gt": after}}
        if types:
            query["type"] = {"$in": list(types)}
        docs = await EventDoc.find(query).sort("seq").limit(limit).to_list()
        return [{**d.body, "seq": d.seq} for d in docs]

    async def logged_owner(self, job_id: str) -> str | None:
        created = await EventDoc.find_one({"job_id": job_id, "type": "job.created"})
        if created is None:
            return None
        owner = created.body.get("payload", {}).get("user_id")
        return owner if isinstance(owner, str) else None
