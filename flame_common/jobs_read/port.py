"""The `JobReads` port: what services other than the controller may read of jobs and tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class JobRecord:
    """A job as the controller last projected it."""

    job_id: str
    user_id: str
    name: str
    design_id: str
    spec: dict[str, Any]
    state: str
    created_at: datetime
    reason: str = ""
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    last_seq: int = 0


@dataclass(frozen=True)
class TaskRecord:
    """A task as the controller last projected it (its key included: callers hide it)."""

    job_id: str
    task_id: str
    role: str
    key: str
    timestamp: datetime
    state: str = "ready"
    compute_id: str = "default"
    group_association: dict[str, str] | None = None
    log: str = ""
    log_size: int | None = None  # bytes of output its final status announced (None: not ended)
    log_tail_at: int | None = None  # where `log` starts in that output when it is its last bytes
    config: dict[str, Any] = field(default_factory=dict)
    broker_user: str = ""  # the job's data-plane broker login while it runs (agents only)
    broker_password: str = field(default="", repr=False)
    broker_sorts: tuple[str, ...] = ()  # the `job_brokers` sorts the login is served on


class JobReads(Protocol):
    """Read-only queries over the controller's projections and event log (never writes)."""

    async def job(self, job_id: str, user_id: str | None = None) -> JobRecord | None:
        """The job, or None when absent (or, with `user_id`, owned by someone else)."""

    async def jobs_of_user(self, user_id: str, limit: int = 0) -> list[JobRecord]:
        """The user's jobs by creation time; `limit` > 0 caps the count."""

    async def jobs_on_compute(self, compute_id: str) -> list[JobRecord]:
        """Jobs with at least one task on the compute, by creation time."""

    async def count_jobs_of_design(self, user_id: str, design_id: str) -> int:
        """How many jobs of the user use the design."""

    async def task(self, job_id: str, task_id: str) -> TaskRecord | None:
        """One task, or None."""

    async def tasks_of_job(
        self, job_id: str, limit: int = 0, compute_id: str | None = None
    ) -> list[TaskRecord]:
        """The job's tasks (only those on `compute_id` when given) by role then task id."""

    async def task_keys(self, job_id: str, task_ids: list[str]) -> dict[str, str]:
        """Task id -> key for those of `task_ids` that exist in the job."""

    async def terminal_tasks(self, task_ids: list[str]) -> set[str]:
        """Those of `task_ids` (of any job) whose state is terminal."""

    async def events_after(
        self, job_id: str, after: int, limit: int, types: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Logged event envelopes of the job with seq > `after`, by seq (`seq` set); only those
        of `types` when given."""

    async def logged_owner(self, job_id: str) -> str | None:
        """The user id in the job's `job.created` event (kept after the job is deleted)."""
