"""What the controller needs from storage: the job store (log + projections) and the catalog.

Adapters: `mongo.py` (MongoDB through Beanie/pymongo, what the services share) and `memory.py`
(in-process, for simulation and tests). `app.py` builds one of each and injects them.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flame_controller.broker_accounts import BrokerLogin
from flame_controller.expansion import DatasetRef, PlannedTask
from flame_controller.state import JobView
from schemas.events import EventBase


class DuplicateEvent(Exception):
    """An appended event's id is already in the log (nothing of that write was stored)."""


class SeqTaken(Exception):
    """Another writer already appended this `seq` of the job (nothing of that write was stored):
    the job's state here is stale; reload it from the log."""


class UnfoldableLog(Exception):
    """A job's stored log cannot be replayed: an event does not parse or does not fold."""

    def __init__(self, job_id: str, seq: int, error: Exception) -> None:
        self.job_id, self.seq = job_id, seq
        self.reason = f"event {seq} of its log cannot be replayed: {type(error).__name__}: {error}"
        super().__init__(f"job {job_id}: {self.reason}")


@dataclass(frozen=True)
class Design:
    """What planning reads of a design: its schema and the revisions a job pins."""

    schema: dict[str, Any] | None
    schema_revision: int
    code_revision: int


@dataclass(frozen=True)
class CommandRecord:
    """A command run under an idempotency key (`<user>/<key>`): its kind, its job, the
    correlation id its events carry, and its result once it finished."""

    key: str
    kind: str
    job_id: str
    correlation_id: str
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoggedEvent:
    """One entry of a job's log."""

    event: EventBase
    published: bool


@dataclass(frozen=True)
class JobRecord:
    """The job projection (what `flamectl get job` shows; `deadline_at` drives the timers)."""

    job_id: str
    user_id: str
    design_id: str
    name: str
    spec: dict[str, Any]
    state: str
    reason: str
    task_count: int
    created_at: datetime | None
    started_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None
    deadline_at: datetime | None
    last_seq: int


@dataclass(frozen=True)
class TaskRecord:
    """The task projection (what agents fetch with their key)."""

    job_id: str
    task_id: str
    role: str
    group_association: dict[str, str] | None
    compute_id: str
    key: str
    dataset: str
    config: dict[str, Any]
    state: str
    log: str
    exit_code: int | None
    agent_id: str
    broker_user: str = ""  # the job's data-plane broker login while it runs
    broker_password: str = field(default="", repr=False)


class JobStore(Protocol):
    """The job event log (unique event ids, per-job `seq`) and the job/task projections.

    The caller holds the job's lock: one writer per job.
    """

    async def load(self, job_id: str) -> tuple[JobView | None, set[str]]:
        """Replay the job's log in `seq` order: its state and the ids of every applied event;
        raises UnfoldableLog when an event does not parse or fold."""
        ...

    async def quarantine(self, job_id: str, reason: str) -> None:
        """Mark a job whose log cannot be replayed `failed` with `reason` in its projection
        (no deadline: timers and recovery leave it alone); the log stays as it is."""
        ...

    async def create(
        self,
        state: JobView,
        events: Sequence[EventBase],
        tasks: Sequence[PlannedTask],
        keys: dict[str, str],
    ) -> None:
        """Write a new job (log, job and tasks) all-or-nothing."""
        ...

    async def append(
        self,
        state: JobView,
        events: Sequence[EventBase],
        *,
        observed: AbstractSet[str] = frozenset(),
        planned: Sequence[PlannedTask] = (),
        keys: dict[str, str] | None = None,
        before: JobView | None = None,
        login: BrokerLogin | None = None,
    ) -> None:
        """Append stamped `events` (ids in `observed` came from the bus: already published),
        then project `state` (the fold of `before` and `events`; with `login`, the job's broker
        login is stored on all its tasks in the same write as a start's reset); raises
        DuplicateEvent, or SeqTaken when a `(job_id, seq)` is already in the log (`(job_id,
        seq)` is unique)."""
        ...

    async def reproject(self, state: JobView) -> None:
        """Bring the projections in line with a replayed state (recovery)."""
        ...

    async def purge(self, job_id: str) -> None:
        """Remove every trace of a job (undoes a failed create)."""
        ...

    async def set_broker_login(self, job_id: str, login: BrokerLogin | None) -> None:
        """Store (None: clear) the job's data-plane broker login on its tasks, for their agents."""
        ...

    async def pending(self, job_id: str | None = None) -> list[EventBase]:
        """Events not yet marked published (of one job if given), in per-job `seq` order (the
        outbox)."""
        ...

    async def mark_published(self, event_ids: Sequence[str]) -> None: ...

    async def claim_command(self, record: CommandRecord) -> CommandRecord | None:
        """Store `record` (no result yet) unless its key is already stored: then the stored one."""
        ...

    async def finish_command(self, key: str, result: dict[str, Any]) -> None:
        """Keep the result of the command stored under `key` (answered to its retries)."""
        ...

    async def committed(self, job_id: str, correlation_id: str) -> bool:
        """Whether the job's log holds events of the command with that correlation id."""
        ...

    async def due(self, now: datetime) -> list[str]:
        """Jobs whose deadline (maxRunTime or stop grace) is at or before `now`."""
        ...

    async def open_jobs(self) -> list[str]:
        """Jobs not in a terminal state (replayed at start)."""
        ...

    async def task_keys(self, job_id: str) -> dict[str, str]:
        """Task id -> key of every task of the job (the proofs of its agents' events)."""
        ...

    async def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Jobs by state and tasks by state (metrics): one grouped count each."""
        ...


class JobRecords(Protocol):
    """Reads of the log and projections (tests, simulation, monitors)."""

    async def log(self, job_id: str) -> list[LoggedEvent]: ...

    async def job(self, job_id: str) -> JobRecord | None: ...

    async def tasks(self, job_id: str) -> list[TaskRecord]: ...


class Catalog(Protocol):
    """What planning reads: designs, code, datasets and computes (written by the apiserver)."""

    async def design(self, user_id: str, design_id: str) -> Design | None: ...

    async def code(self, user_id: str, design_id: str, revision: int) -> bytes | None:
        """The code zip of that revision."""
        ...

    async def datasets(self, dataset_ids: Sequence[str]) -> dict[str, DatasetRef]:
        """The datasets that exist among `dataset_ids`."""
        ...

    async def unmanaged_computes(self) -> frozenset[str]:
        """Computes on which nobody deploys workers (users start flamelets by hand)."""
        ...
