"""The MongoDB adapters of the controller's ports: job store (EventDoc/JobDoc/TaskDoc) and catalog.

The log (`EventDoc`, per-job `seq`, unique `event_id`) is the source of truth; `JobDoc`/`TaskDoc`
are projections rebuilt from it when they lag behind (crash between the two writes). Writes go
through pymongo directly (Beanie's encoder is slow in bulk): one `insert_many` of a batch's events
and one `bulk_write` of its task updates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import DeleteMany, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from flame_common.documents import (
    CodeDoc,
    ComputeDoc,
    DatasetDoc,
    DesignDoc,
    EventDoc,
    JobDoc,
    TaskDoc,
)
from flame_common.logs import get_logger
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
from schemas.events import EventBase, parse_event
from schemas.states import TERMINAL_STATES

DUPLICATE_KEY = 11000
COMMANDS = "commands"  # idempotency keys of commands: `_id` = key, the result once finished
_JOB_FIELDS = [f.name for f in fields(JobRecord)]
_TASK_FIELDS = [f.name for f in fields(TaskRecord)]
_JOB_TIMES = {"created_at", "started_at", "updated_at", "ended_at", "deadline_at"}


def event_doc(event: EventBase, *, published: bool) -> dict[str, Any]:
    """The stored form of an `EventDoc`."""
    return {
        "event_id": event.id,
        "type": event.type,
        "job_id": event.job_id or "",
        "seq": event.seq or 0,
        "occurred_at": event.occurred_at,
        "published": published,
        "body": event.model_dump(mode="json"),
    }


def task_oid(job_id: str, task_id: str) -> ObjectId:
    """A task document's deterministic `_id` (updates by `_id` are ~5x faster on nx-27017)."""
    return ObjectId(hashlib.sha1(f"{job_id}/{task_id}".encode()).digest()[:12])


log = get_logger(__name__)


class MongoJobStore:
    """`JobStore` and `JobRecords` on MongoDB (Beanie initialised by the caller)."""

    def __init__(self, stop_grace_seconds: float, deploy_timeout: float | None = None) -> None:
        self.grace = stop_grace_seconds
        self.deploy = deploy_timeout

    async def load(self, job_id: str) -> tuple[JobView | None, set[str]]:
        cursor = EventDoc.get_pymongo_collection().find({"job_id": job_id}, sort=[("seq", 1)])
        state: JobView | None = None
        seen: set[str] = set()
        async for raw in cursor:
            try:
                event = parse_event(raw["body"])
                state = evolve(state, event)
            except Exception as exc:
                raise UnfoldableLog(job_id, raw.get("seq", 0), exc) from exc
            seen.add(event.id)
        return projectable(job_id, state, self.grace, self.deploy), seen

    async def quarantine(self, job_id: str, reason: str) -> None:
        fields = quarantined_fields(reason, now())
        await JobDoc.get_pymongo_collection().update_one({"job_id": job_id}, {"$set": fields})

    async def create(
        self,
        state: JobView,
        events: Sequence[EventBase],
        tasks: Sequence[PlannedTask],
        keys: dict[str, str],
    ) -> None:
        try:
            await _insert_events([event_doc(e, published=False) for e in events])
            job = {
                **job_fields(state, self.grace, self.deploy),
                "user_id": state.user_id,
                "design_id": state.spec.design_id,
            }
            await JobDoc.get_pymongo_collection().insert_one(job)
            if tasks:
                await TaskDoc.get_pymongo_collection().insert_many(
                    [_task_doc(state.job_id, t, keys[t.task_id]) for t in tasks]
                )
        except SeqTaken:  # another writer created this job: nothing here is ours to remove
            raise
        except Exception:
            await self.purge(state.job_id)
            raise

    async def purge(self, job_id: str) -> None:
        for doc in (EventDoc, TaskDoc, JobDoc):
            await doc.get_pymongo_collection().delete_many({"job_id": job_id})

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
        await _insert_events([event_doc(e, published=e.id in observed) for e in events])
        if state.deleted:
            for doc in (TaskDoc, JobDoc):
                await doc.get_pymongo_collection().delete_many({"job_id": state.job_id})
            return
        stored = None if login is None else _login_fields(login)
        ops = _task_ops(state.job_id, events, planned, keys or {}, stored)
        if ops:
            await TaskDoc.get_pymongo_collection().bulk_write(ops, ordered=True)
        if before is None or summary_changed(before, state, self.grace, self.deploy):
            await self._project_job(state, spec=any(e.type == "job.updated" for e in events))

    async def reproject(self, state: JobView) -> None:
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
        fields = job_fields(state, self.grace, self.deploy)
        if not spec:
            del fields["spec"], fields["name"]
        await JobDoc.get_pymongo_collection().update_one({"job_id": state.job_id}, {"$set": fields})

    async def set_broker_login(self, job_id: str, login: BrokerLogin | None) -> None:
        await TaskDoc.get_pymongo_collection().update_many(
            {"job_id": job_id}, {"$set": _login_fields(login)}
        )

    async def pending(self, job_id: str | None = None) -> list[EventBase]:
        query: dict[str, Any] = {"published": False}
        if job_id is not None:
            query["job_id"] = job_id
        cursor = EventDoc.get_pymongo_collection().find(query, sort=[("job_id", 1), ("seq", 1)])
        events: list[EventBase] = []
        async for raw in cursor:
            try:
                events.append(parse_event(raw["body"]))
            except ValueError as exc:  # a poison job's event: its job is quarantined on load
                log.error(
                    "unpublished event does not parse, left out",
                    event_id=raw.get("event_id"),
                    job_id=raw.get("job_id"),
                    error=str(exc),
                )
        return events

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        if event_ids:
            await EventDoc.get_pymongo_collection().update_many(
                {"event_id": {"$in": list(event_ids)}}, {"$set": {"published": True}}
            )

    async def claim_command(self, record: CommandRecord) -> CommandRecord | None:
        doc = {
            "_id": record.key,
            "kind": record.kind,
            "job_id": record.job_id,
            "correlation_id": record.correlation_id,
            "result": None,
            "created_at": now(),
        }
        try:
            await _commands().insert_one(doc)
            return None
        except DuplicateKeyError:
            stored = await _commands().find_one({"_id": record.key})
        assert stored is not None  # keys are never removed
        return CommandRecord(
            key=stored["_id"],
            kind=stored["kind"],
            job_id=stored["job_id"],
            correlation_id=stored["correlation_id"],
            result=stored.get("result"),
        )

    async def finish_command(self, key: str, result: dict[str, Any]) -> None:
        await _commands().update_one({"_id": key}, {"$set": {"result": result}})

    async def committed(self, job_id: str, correlation_id: str) -> bool:
        found = await EventDoc.get_pymongo_collection().find_one(
            {"job_id": job_id, "body.correlation_id": correlation_id}, projection={"_id": 1}
        )
        return found is not None

    async def due(self, now: datetime) -> list[str]:
        cursor = JobDoc.get_pymongo_collection().find({"deadline_at": {"$lte": now}}, {"job_id": 1})
        return [raw["job_id"] async for raw in cursor]

    async def open_jobs(self) -> list[str]:
        finished = [s.value for s in TERMINAL_STATES]
        cursor = JobDoc.get_pymongo_collection().find({"state": {"$nin": finished}}, {"job_id": 1})
        return [raw["job_id"] async for raw in cursor]

    async def task_keys(self, job_id: str) -> dict[str, str]:
        tasks = TaskDoc.get_pymongo_collection()
        cursor = tasks.find({"job_id": job_id}, {"task_id": 1, "key": 1})
        return {raw["task_id"]: raw["key"] async for raw in cursor}

    async def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        group = [{"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        counts: list[dict[str, int]] = []
        for doc in (JobDoc, TaskDoc):
            cursor = await doc.get_pymongo_collection().aggregate(group)
            counts.append({str(raw["_id"]): int(raw["n"]) async for raw in cursor})
        return counts[0], counts[1]

    # --- JobRecords ------------------------------------------------------------------------------

    async def log(self, job_id: str) -> list[LoggedEvent]:
        cursor = EventDoc.get_pymongo_collection().find({"job_id": job_id}, sort=[("seq", 1)])
        return [LoggedEvent(parse_event(raw["body"]), raw["published"]) async for raw in cursor]

    async def job(self, job_id: str) -> JobRecord | None:
        raw = await JobDoc.get_pymongo_collection().find_one({"job_id": job_id})
        if raw is None:
            return None
        values: dict[str, Any] = {k: raw.get(k) for k in _JOB_FIELDS}
        values.update((k, _utc(values[k])) for k in _JOB_TIMES)
        return JobRecord(**values)

    async def tasks(self, job_id: str) -> list[TaskRecord]:
        cursor = TaskDoc.get_pymongo_collection().find({"job_id": job_id}, sort=[("task_id", 1)])
        return [TaskRecord(**{k: raw.get(k) for k in _TASK_FIELDS}) async for raw in cursor]


def _commands() -> Any:
    """The collection of command idempotency keys (in the events' database)."""
    return EventDoc.get_pymongo_collection().database[COMMANDS]


class MongoCatalog:
    """`Catalog` on the apiserver's collections (designs, code, datasets, computes)."""

    async def design(self, user_id: str, design_id: str) -> Design | None:
        doc = await DesignDoc.find_one({"user_id": user_id, "design_id": design_id})
        if doc is None:
            return None
        return Design(doc.schema_, doc.schema_revision, doc.code_revision)

    async def code(self, user_id: str, design_id: str, revision: int) -> bytes | None:
        doc = await CodeDoc.find_one(
            {"user_id": user_id, "design_id": design_id, "revision": revision}
        )
        return None if doc is None else doc.data

    async def datasets(self, dataset_ids: Sequence[str]) -> dict[str, DatasetRef]:
        if not dataset_ids:
            return {}
        docs = await DatasetDoc.find({"dataset_id": {"$in": list(dataset_ids)}}).to_list()
        return {
            d.dataset_id: DatasetRef(
                d.dataset_id, d.user_id, d.url, d.compute_id or "default", d.is_public
            )
            for d in docs
        }

    async def unmanaged_computes(self) -> frozenset[str]:
        docs = await ComputeDoc.find({"managed": False}).to_list()
        return frozenset(d.compute_id for d in docs)


async def _insert_events(docs: list[dict[str, Any]]) -> None:
    try:
        await EventDoc.get_pymongo_collection().insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if errors and errors[0].get("code") == DUPLICATE_KEY:
            doc = docs[errors[0]["index"]]
            if "event_id" in str(errors[0].get("errmsg", "")):
                raise DuplicateEvent(f"event {doc['event_id']} already logged") from exc
            raise SeqTaken(f"seq {doc['seq']} of job {doc['job_id']} already logged") from exc
        raise


def _utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (nx-27017 answers ISO strings without a zone)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _task_doc(job_id: str, t: PlannedTask, key: str) -> dict[str, Any]:
    return {"_id": task_oid(job_id, t.task_id), **new_task(job_id, t, key)}


def _login_fields(login: BrokerLogin | None) -> dict[str, Any]:
    """A task document's broker login fields (None: cleared)."""
    return {
        "broker_user": login.user if login else "",
        "broker_password": login.password if login else "",
        "broker_sorts": list(login.sorts) if login else [],
    }


def _task_ops(
    job_id: str,
    events: Sequence[EventBase],
    planned: Sequence[PlannedTask],
    keys: dict[str, str],
    login: dict[str, Any] | None = None,
) -> list[Any]:
    """Task projection writes for `events`, in order; equal changes of many tasks: one write.
    `login` (stored login fields) goes into a start's reset of every task (its own write if
    `events` hold no start)."""
    by_id = {t.task_id: t for t in planned}
    ops: list[Any] = []
    pending: dict[str, list[ObjectId]] = {}  # one $set (as canonical JSON) -> task _ids
    sets: dict[str, dict[str, Any]] = {}
    removed: list[str] = []

    pending_tasks: set[ObjectId] = set()  # the tasks with a change in `pending`

    def flush() -> None:
        for key, oids in pending.items():
            if len(oids) == 1:
                ops.append(UpdateOne({"_id": oids[0]}, {"$set": sets[key]}))
            else:
                ops.append(UpdateMany({"_id": {"$in": oids}}, {"$set": sets[key]}))
        pending.clear()
        pending_tasks.clear()

    for e in events:
        change = task_change(e)
        if change is not None:
            oid = task_oid(job_id, e.task_id or "")
            if oid in pending_tasks:
                flush()  # a task's changes are written in their order
            pending_tasks.add(oid)
            key = repr(sorted(change.items()))
            sets[key] = {**change, "timestamp": e.occurred_at}
            pending.setdefault(key, []).append(oid)
            continue
        flush()  # keep order across the other kinds of writes
        if e.type == "task.created" and e.task_id in by_id:
            doc = new_task(job_id, by_id[e.task_id], keys[e.task_id])
            where = {"_id": task_oid(job_id, e.task_id)}
            ops.append(UpdateOne(where, {"$set": doc}, upsert=True))
        elif e.type == "task.removed":
            removed.append(e.task_id or "")
        elif (reset := start_reset(e)) is not None:
            reset = {**reset, **(login or {}), "timestamp": now()}
            ops.append(UpdateMany({"job_id": job_id}, {"$set": reset}))
            login = None
    flush()
    if login is not None:
        ops.append(UpdateMany({"job_id": job_id}, {"$set": login}))
    if removed:
        ops.append(DeleteMany({"job_id": job_id, "task_id": {"$in": removed}}))
    return ops
