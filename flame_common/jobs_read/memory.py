"""`JobReads` in memory: jobs, tasks and events put in by whoever plays the controller."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flame_common.jobs_read.port import JobRecord, TaskRecord
from schemas.states import TERMINAL_STATES

_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


class MemoryJobReads:
    """The read side of `JobReads` plus the writes its owner uses to fill it."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._tasks: dict[tuple[str, str], TaskRecord] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}

    # --- writes (the owner's side) ---------------------------------------------------------

    def put_job(self, job: JobRecord) -> None:
        self._jobs[job.job_id] = job

    def put_task(self, task: TaskRecord) -> None:
        self._tasks[(task.job_id, task.task_id)] = task

    def remove_job(self, job_id: str) -> None:
        """Drop the job and its tasks; its event log stays."""
        self._jobs.pop(job_id, None)
        for key in [k for k in self._tasks if k[0] == job_id]:
            del self._tasks[key]

    def log_event(self, job_id: str, seq: int, body: dict[str, Any]) -> None:
        self._events.setdefault(job_id, []).append({**body, "seq": seq})
        self._events[job_id].sort(key=lambda e: e["seq"])

    # --- JobReads --------------------------------------------------------------------------

    async def job(self, job_id: str, user_id: str | None = None) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is None or (user_id is not None and job.user_id != user_id):
            return None
        return job

    async def jobs_of_user(self, user_id: str, limit: int = 0) -> list[JobRecord]:
        return _cap(_by_creation(j for j in self._jobs.values() if j.user_id == user_id), limit)

    async def jobs_on_compute(self, compute_id: str) -> list[JobRecord]:
        job_ids = {t.job_id for t in self._tasks.values() if t.compute_id == compute_id}
        return _by_creation(self._jobs[j] for j in job_ids if j in self._jobs)

    async def count_jobs_of_design(self, user_id: str, design_id: str) -> int:
        return sum(j.user_id == user_id and j.design_id == design_id for j in self._jobs.values())

    async def task(self, job_id: str, task_id: str) -> TaskRecord | None:
        return self._tasks.get((job_id, task_id))

    async def tasks_of_job(
        self, job_id: str, limit: int = 0, compute_id: str | None = None
    ) -> list[TaskRecord]:
        tasks = [
            t
            for t in self._tasks.values()
            if t.job_id == job_id and compute_id in (None, t.compute_id)
        ]
        return _cap(sorted(tasks, key=lambda t: (t.role, t.task_id)), limit)

    async def task_keys(self, job_id: str, task_ids: list[str]) -> dict[str, str]:
        return {t: task.key for t in task_ids if (task := self._tasks.get((job_id, t)))}

    async def terminal_tasks(self, task_ids: list[str]) -> set[str]:
        wanted = set(task_ids)
        return {
            t.task_id for t in self._tasks.values() if t.task_id in wanted and t.state in _TERMINAL
        }

    async def events_after(
        self, job_id: str, after: int, limit: int, types: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        log = self._events.get(job_id, [])
        wanted = [e for e in log if e["seq"] > after and (not types or e.get("type") in types)]
        return [dict(e) for e in wanted[:limit]]

    async def logged_owner(self, job_id: str) -> str | None:
        for event in self._events.get(job_id, []):
            if event.get("type") == "job.created":
                owner = event.get("payload", {}).get("user_id")
                return owner if isinstance(owner, str) else None
        return None


def _by_creation(jobs: Iterable[JobRecord]) -> list[JobRecord]:
    return sorted(jobs, key=lambda j: (j.created_at, j.job_id))


def _cap(items: list[Any], limit: int) -> list[Any]:
    return items[:limit] if limit > 0 else items
