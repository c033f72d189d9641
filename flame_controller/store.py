"""Event store and projections on MongoDB: append a job's events, then project jobs and tasks.

The log (`EventDoc`, per-job `seq`, unique `event_id`) is the source of truth; `JobDoc`/`TaskDoc`
are projections rebuilt from it when they lag behind (crash between the two writes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import DeleteMany, UpdateMany, UpdateOne

from flame_common.documents import EventDoc, JobDoc, TaskDoc
from flame_common.logs import get_logger
from flame_controller.expansion import PlannedTask
from flame_controller.state import JobView, evolve
from schemas.events import EventBase, parse_event
from schemas.states import JobState

log = get_logger(__name__)


def event_doc(event: EventBase, *, published: bool) -> dict[str, Any]:
    """The stored form of an `EventDoc` (built directly: Beanie's encoder is slow in bulk)."""
    return {
        "event_id": event.id,
        "type": event.type,
        "job_id": event.job_id or "",
        "seq": event.seq or 0,
        "occurred_at": event.occurred_at,
        "published": published,
        "body": event.model_dump(mode="json"),
    }


async def insert_events(docs: list[dict[str, Any]]) -> None:
    await EventDoc.get_pymongo_collection().insert_many(docs, ordered=True)


class JobStore:
    """Reads and writes one job's log and projections (the caller holds the job's lock)."""

    def __init__(self, stop_grace_seconds: float) -> None:
        self.grace = stop_grace_seconds

    async def load(self, job_id: str) -> tuple[JobView | None, set[str]]:
        """Replay the job's log: its state and the ids of every event already applied."""
        cursor = EventDoc.get_pymongo_collection().find({"job_id": job_id}, sort=[("seq", 1)])
        state: JobView | None = None
        seen: set[str] = set()
        async for raw in cursor:
            event = parse_event(raw["body"])
            state = evolve(state, event)
            seen.add(event.id)
        return state, seen

    async def create(
        self,
        state: JobView,
        events: Sequence[EventBase],
        tasks: Sequence[PlannedTask],
        keys: dict[str, str],
    ) -> None:
        """Write a new job all-or-nothing (compensating deletes if any write fails)."""
        try:
            await insert_events([event_doc(e, published=False) for e in events])
            await JobDoc(
                **self._job_fields(state), user_id=state.user_id, design_id=state.spec.design_id
            ).insert()
            await TaskDoc.insert_many([_task_doc(state.job_id, t, keys[t.task_id]) for t in tasks])
        except Exception:
            await self.purge(state.job_id)
            raise

    async def purge(self, job_id: str) -> None:
        """Remove every trace of a job (only used to undo a failed create)."""
        for doc in (EventDoc, TaskDoc, JobDoc):
            await doc.get_pymongo_collection().delete_many({"job_id": job_id})

    async def append(
        self,
        state: JobView,
        events: Sequence[EventBase],
        *,
        observed: set[str] = frozenset(),  # type: ignore[assignment]
        planned: Sequence[PlannedTask] = (),
        keys: dict[str, str] | None = None,
        before: JobView | None = None,
    ) -> None:
        """Append events (ids in `observed` came from the bus: already published), then project.

        The job document is rewritten only when a job-level field changed since `before`.
        """
        if not events:
            return
        await insert_events([event_doc(e, published=e.id in observed) for e in events])
        if state.deleted:
            for doc in (TaskDoc, JobDoc):
                await doc.get_pymongo_collection().delete_many({"job_id": state.job_id})
            return
        ops = _task_ops(state.job_id, events, planned, keys or {})
        if ops:
            await TaskDoc.get_pymongo_collection().bulk_write(ops, ordered=True)
        if before is None or self._summary(before) != self._summary(state):
            await self._project_job(state, spec=any(e.type == "job.updated" for e in events))

    async def reproject(self, state: JobView) -> None:
        """Bring projections in line with a replayed state."""
        ops: list[Any] = [
            UpdateOne(
                {"_id": task_oid(state.job_id, t.task_id)},
                {"$set": {"state": t.state.value, "agent_id": t.agent_id}},
            )
            for t in state.tasks.values()
        ]
        if ops:
            await TaskDoc.get_pymongo_collection().bulk_write(ops, ordered=False)
        await self._project_job(state)

    async def _project_job(self, state: JobView, *, spec: bool = True) -> None:
        fields = self._job_fields(state)
        if not spec:
            del fields["spec"], fields["name"]
        await JobDoc.get_pymongo_collection().update_one({"job_id": state.job_id}, {"$set": fields})

    def _summary(self, s: JobView) -> dict[str, Any]:
        fields = self._job_fields(s)
        del fields["spec"], fields["last_seq"]
        return fields

    def _job_fields(self, s: JobView) -> dict[str, Any]:
        return {
            "job_id": s.job_id,
            "name": s.spec.name,
            "spec": s.spec.model_dump(mode="json", by_alias=True),
            "state": s.state.value,
            "reason": s.reason,
            "task_count": len(s.tasks),
            "created_at": s.created_at,
            "started_at": s.started_at,
            "updated_at": s.updated_at,
            "ended_at": s.ended_at,
            "deadline_at": s.deadline(self.grace),
            "last_seq": s.last_seq,
        }


def task_oid(job_id: str, task_id: str) -> ObjectId:
    """A task document's deterministic `_id` (updates by `_id` are ~5x faster on nx-27017)."""
    return ObjectId(hashlib.sha1(f"{job_id}/{task_id}".encode()).digest()[:12])


def _task_doc(job_id: str, t: PlannedTask, key: str) -> TaskDoc:
    return TaskDoc(
        id=task_oid(job_id, t.task_id),
        job_id=job_id,
        task_id=t.task_id,
        role=t.role,
        group_association=t.group_association,
        compute_id=t.compute_id,
        key=key,
        dataset=t.dataset,
        config=t.config.model_copy(update={"taskid": t.task_id}).to_wire(),
    )


def _task_ops(
    job_id: str, events: Sequence[EventBase], planned: Sequence[PlannedTask], keys: dict[str, str]
) -> list[Any]:
    """Task projection writes for `events`, in order; equal changes of many tasks: one write."""
    by_id = {t.task_id: t for t in planned}
    ops: list[Any] = []
    pending: dict[str, list[ObjectId]] = {}  # one $set (as canonical JSON) -> task _ids
    sets: dict[str, dict[str, Any]] = {}
    removed: list[str] = []

    def flush() -> None:
        for key, oids in pending.items():
            if len(oids) == 1:
                ops.append(UpdateOne({"_id": oids[0]}, {"$set": sets[key]}))
            else:
                ops.append(UpdateMany({"_id": {"$in": oids}}, {"$set": sets[key]}))
        pending.clear()

    for e in events:
        p = e.payload
        fields: dict[str, Any] | None = None
        if e.type == "task.status_changed":
            fields = {"state": p.state.value, "exit_code": p.exit_code}
            if p.log_tail or p.reason:  # a report without a log keeps the previous one
                fields["log"] = p.log_tail or p.reason
        elif e.type == "agent.registered":
            fields = {"agent_id": p.agent_id}
        if fields is not None:
            key = repr(sorted(fields.items()))
            sets[key] = {**fields, "timestamp": e.occurred_at}
            pending.setdefault(key, []).append(task_oid(job_id, e.task_id or ""))
            continue
        flush()  # keep order across the other kinds of writes
        where = {"_id": task_oid(job_id, e.task_id or "")}
        if e.type == "task.created" and e.task_id in by_id:
            doc = _task_doc(job_id, by_id[e.task_id], keys[e.task_id]).model_dump(
                exclude={"id", "revision_id"}
            )
            ops.append(UpdateOne(where, {"$set": doc}, upsert=True))
        elif e.type == "task.removed":
            removed.append(e.task_id or "")
        elif e.type == "job.state_changed" and p.to_state is JobState.STARTING:
            reset: dict[str, Any] = {"state": JobState.READY.value, "log": "", "exit_code": None}
            if p.from_state.is_terminal:  # a re-run: the previous run's agents are gone
                reset["agent_id"] = ""
            ops.append(UpdateMany({"job_id": job_id}, {"$set": {**reset, "timestamp": _now()}}))
    flush()
    if removed:
        ops.append(DeleteMany({"job_id": job_id, "task_id": {"$in": removed}}))
    return ops


def _now() -> datetime:
    return datetime.now(UTC)
