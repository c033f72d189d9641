"""The in-memory adapters of the controller's ports (simulation, tests): same semantics as Mongo.

Unique event ids across all jobs, unique `(job_id, seq)`, per-job `seq` order, all-or-nothing
create, projections written exactly as `mongo.py` writes them (same fields, same moments). Each
call runs without awaiting, so it is atomic on the event loop. Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from flame_controller.broker_accounts import BrokerLogin
from flame_controller.expansion import DatasetRef, PlannedTask
from flame_controller.ports import (
    CommandRecord,
    Design,
    DuplicateEvent,
    JobRecord,
    LoggedEvent,
    SeqTaken,
    TaskRecord,
    UnfoldableLog,
)
from flame_controller.projection import (
    job_fields,
    new_task,
    now,
    projectable,
    quarantined_fields,
    start_reset,
    summary_changed,
    task_change,
)
from flame_controller.state import JobView, evolve
from schemas.events import EventBase
from schemas.states import TERMINAL_STATES

_JOB_FIELDS = [f.name for f in fields(JobRecord)]
_TASK_FIELDS = [f.name for f in fields(TaskRecord)]
_FINISHED = frozenset(s.value for s in TERMINAL_STATES)


class MemoryJobStore:
    """`JobStore` and `JobRecords` in process memory."""

    def __init__(self, stop_grace_seconds: float, deploy_timeout: float | None = None) -> None:
        self.grace = stop_grace_seconds
        self.deploy = deploy_timeout
        self._log: dict[str, list[EventBase]] = {}  # job id -> events in seq order
        self._published: dict[str, bool] = {}  # event id -> published (also: the unique ids)
        self._seqs: dict[str, set[int]] = {}  # job id -> the seqs in its log (unique)
        self._jobs: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, dict[str, dict[str, Any]]] = {}  # job id -> task id -> fields
        self._commands: dict[str, CommandRecord] = {}  # idempotency key -> command

    async def load(self, job_id: str) -> tuple[JobView | None, set[str]]:
        state: JobView | None = None
        seen: set[str] = set()
        for event in self._log.get(job_id, []):
            try:
                state = evolve(state, event)
            except Exception as exc:
                raise UnfoldableLog(job_id, event.seq or 0, exc) from exc
            seen.add(event.id)
        return projectable(job_id, state, self.grace, self.deploy), seen

    async def quarantine(self, job_id: str, reason: str) -> None:
        if (job := self._jobs.get(job_id)) is not None:
            job.update(quarantined_fields(reason, now()))

    async def create(
        self,
        state: JobView,
        events: Sequence[EventBase],
        tasks: Sequence[PlannedTask],
        keys: dict[str, str],
    ) -> None:
        self._check_new(events)
        docs = {t.task_id: new_task(state.job_id, t, keys[t.task_id]) for t in tasks}
        job = {
            **job_fields(state, self.grace, self.deploy),
            "user_id": state.user_id,
            "design_id": state.spec.design_id,
        }
        self._add(events, observed=frozenset())
        self._jobs[state.job_id] = job
        self._tasks[state.job_id] = docs

    async def purge(self, job_id: str) -> None:
        for event in self._log.pop(job_id, []):
            self._published.pop(event.id, None)
        self._seqs.pop(job_id, None)
        self._jobs.pop(job_id, None)
        self._tasks.pop(job_id, None)

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
        if not events:
            return
        self._check_new(events)
        self._add(events, observed=observed)
        if state.deleted:
            self._jobs.pop(state.job_id, None)
            self._tasks.pop(state.job_id, None)
            return
        self._project_tasks(state.job_id, events, planned, keys or {})
        if login is not None:
            await self.set_broker_login(state.job_id, login)
        if before is None or summary_changed(before, state, self.grace, self.deploy):
            self._project_job(state, spec=any(e.type == "job.updated" for e in events))

    async def reproject(self, state: JobView) -> None:
        tasks = self._tasks.get(state.job_id, {})
        for t in state.tasks.values():
            if t.task_id in tasks:
                tasks[t.task_id].update(state=t.state.value, agent_id=t.agent_id)
        self._project_job(state)

    async def set_broker_login(self, job_id: str, login: BrokerLogin | None) -> None:
        for task in self._tasks.get(job_id, {}).values():
            task.update(
                broker_user=login.user if login else "",
                broker_password=login.password if login else "",
                broker_sorts=list(login.sorts) if login else [],
            )

    async def pending(self, job_id: str | None = None) -> list[EventBase]:
        jobs = sorted(self._log) if job_id is None else [job_id]
        return [e for j in jobs for e in self._log.get(j, []) if not self._published[e.id]]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            if event_id in self._published:
                self._published[event_id] = True

    async def claim_command(self, record: CommandRecord) -> CommandRecord | None:
        if (stored := self._commands.get(record.key)) is not None:
            return stored
        self._commands[record.key] = record
        return None

    async def finish_command(self, key: str, result: dict[str, Any]) -> None:
        if (record := self._commands.get(key)) is not None:
            self._commands[key] = replace(record, result=result)

    async def committed(self, job_id: str, correlation_id: str) -> bool:
        return any(e.correlation_id == correlation_id for e in self._log.get(job_id, []))

    async def due(self, now: datetime) -> list[str]:
        return [
            job_id
            for job_id, job in self._jobs.items()
            if job["deadline_at"] is not None and job["deadline_at"] <= now
        ]

    async def open_jobs(self) -> list[str]:
        return [job_id for job_id, job in self._jobs.items() if job["state"] not in _FINISHED]

    async def task_keys(self, job_id: str) -> dict[str, str]:
        return {t: task["key"] for t, task in self._tasks.get(job_id, {}).items()}

    async def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        jobs: dict[str, int] = {}
        tasks: dict[str, int] = {}
        for job in self._jobs.values():
            jobs[job["state"]] = jobs.get(job["state"], 0) + 1
        for job_tasks in self._tasks.values():
            for task in job_tasks.values():
                tasks[task["state"]] = tasks.get(task["state"], 0) + 1
        return jobs, tasks

    # --- JobRecords ------------------------------------------------------------------------------

    async def log(self, job_id: str) -> list[LoggedEvent]:
        return [LoggedEvent(e, self._published[e.id]) for e in self._log.get(job_id, [])]

    async def job(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return None if job is None else JobRecord(**{k: job[k] for k in _JOB_FIELDS})

    async def tasks(self, job_id: str) -> list[TaskRecord]:
        tasks = self._tasks.get(job_id, {})
        return [TaskRecord(**{k: tasks[t][k] for k in _TASK_FIELDS}) for t in sorted(tasks)]

    # --- writing ---------------------------------------------------------------------------------

    def _check_new(self, events: Sequence[EventBase]) -> None:
        ids: set[str] = set()
        seqs: set[tuple[str, int]] = set()
        for e in events:
            if e.id in self._published or e.id in ids:
                raise DuplicateEvent(f"event {e.id} already logged")
            key = (e.job_id or "", e.seq or 0)
            if key in seqs or key[1] in self._seqs.get(key[0], ()):
                raise SeqTaken(f"seq {key[1]} of job {key[0]} already logged")
            ids.add(e.id)
            seqs.add(key)

    def _add(self, events: Sequence[EventBase], *, observed: AbstractSet[str]) -> None:
        unordered: set[str] = set()
        for e in events:
            log = self._log.setdefault(e.job_id or "", [])
            if log and (log[-1].seq or 0) > (e.seq or 0):
                unordered.add(e.job_id or "")
            log.append(e)
            self._seqs.setdefault(e.job_id or "", set()).add(e.seq or 0)
            self._published[e.id] = e.id in observed
        for job_id in unordered:  # the log reads in seq order, whatever the append order
            self._log[job_id].sort(key=lambda e: e.seq or 0)

    def _project_tasks(
        self,
        job_id: str,
        events: Sequence[EventBase],
        planned: Sequence[PlannedTask],
        keys: dict[str, str],
    ) -> None:
        by_id = {t.task_id: t for t in planned}
        tasks = self._tasks.setdefault(job_id, {})
        for e in events:
            task = tasks.get(e.task_id or "")
            if (change := task_change(e)) is not None:
                if task is not None:
                    task.update(change, timestamp=e.occurred_at)
            elif e.type == "task.created" and e.task_id in by_id:
                tasks[e.task_id] = new_task(job_id, by_id[e.task_id], keys[e.task_id])
            elif e.type == "task.removed":
                tasks.pop(e.task_id or "", None)
            elif (reset := start_reset(e)) is not None:
                for task in tasks.values():
                    task.update(reset, timestamp=now())

    def _project_job(self, state: JobView, *, spec: bool = True) -> None:
        job = self._jobs.get(state.job_id)
        if job is None:
            return
        fields = job_fields(state, self.grace, self.deploy)
        if not spec:
            del fields["spec"], fields["name"]
        job.update(fields)


class MemoryCatalog:
    """`Catalog` in process memory, filled with `add_*` (what the apiserver would have written)."""

    def __init__(self) -> None:
        self._designs: dict[tuple[str, str], Design] = {}
        self._code: dict[tuple[str, str, int], bytes] = {}
        self._datasets: dict[str, DatasetRef] = {}
        self._computes: dict[str, bool] = {}  # compute id -> managed

    def add_design(self, user_id: str, design_id: str, design: Design) -> None:
        self._designs[(user_id, design_id)] = design

    def add_code(self, user_id: str, design_id: str, revision: int, data: bytes) -> None:
        self._code[(user_id, design_id, revision)] = data

    def add_dataset(self, dataset: DatasetRef) -> None:
        self._datasets[dataset.dataset_id] = dataset

    def add_compute(self, compute_id: str, *, managed: bool = True) -> None:
        self._computes[compute_id] = managed

    async def design(self, user_id: str, design_id: str) -> Design | None:
        return self._designs.get((user_id, design_id))

    async def code(self, user_id: str, design_id: str, revision: int) -> bytes | None:
        return self._code.get((user_id, design_id, revision))

    async def datasets(self, dataset_ids: Sequence[str]) -> dict[str, DatasetRef]:
        return {i: self._datasets[i] for i in dataset_ids if i in self._datasets}

    async def unmanaged_computes(self) -> frozenset[str]:
        return frozenset(c for c, managed in self._computes.items() if not managed)
