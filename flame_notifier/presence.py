"""Presence book: which agent serves which task, when it was last heard, and who went silent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from flame_common.jobs_read import JobReads
from flame_common.proofs import task_refusal
from flame_common.taskkeys import TaskKeys
from flame_notifier.documents import RETIRED_MAX, AgentDoc, Presence
from schemas.events import AgentHeartbeatEvent, AgentRegisteredEvent

# Seconds on a monotonic scale (`time.monotonic`); tests pass a fake one to advance time at will.
Clock = Callable[[], float]


def _now() -> datetime:
    return datetime.now(UTC)


class Silence:
    """When each watched task's agent was last heard, on `clock`; who has been silent too long."""

    def __init__(self, timeout: float, clock: Clock = time.monotonic) -> None:
        self._timeout = timeout
        self._clock = clock
        self._heard: dict[str, float] = {}  # task id -> clock time its agent was last heard

    def heard(self, task_id: str) -> None:
        """The task's agent gave a sign of life now (also: starts watching it)."""
        self._heard[task_id] = self._clock()

    def forget(self, task_id: str) -> None:
        self._heard.pop(task_id, None)

    def pardon(self) -> None:
        """Every watched agent counts as heard now (we could not hear anyone for a while)."""
        now = self._clock()
        self._heard = dict.fromkeys(self._heard, now)

    def silent(self) -> list[str]:
        """Tasks whose agent was not heard within the timeout."""
        limit = self._clock() - self._timeout
        return [task_id for task_id, at in self._heard.items() if at < limit]


@dataclass(frozen=True)
class Registration:
    """Outcome of a registration: `changed` means a new agent now serves the task."""

    accepted: bool
    changed: bool
    reason: str = ""


class PresenceBook:
    """Active agents in memory, persisted to `AgentDoc` only for what a restart needs.

    A registration is one upsert. Heartbeats stay in memory (a restarted notifier gives every
    active agent a full timeout anyway). Agents that stop being watched are written in bulk by
    `flush()`; a restart also drops agents whose task is already terminal. Silence is measured
    on `clock` (monotonic seconds), so a jump of the wall clock loses no agent.
    """

    def __init__(self, timeout: float, jobs: JobReads, clock: Clock = time.monotonic) -> None:
        self._jobs = jobs
        self.keys = TaskKeys(self._job_keys)  # every task's key, one read per job
        self._silence = Silence(timeout, clock)
        self._active: dict[str, AgentDoc] = {}
        self._keys: dict[str, str] = {}  # task id -> key, of the active agents (proofs)
        self._ended: dict[str, tuple[str, Presence]] = {}  # task id -> (job id, presence), unsaved

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._active

    def __len__(self) -> int:
        """Agents watched now (`flame_agents_live`)."""
        return len(self._active)

    async def _job_keys(self, job_id: str) -> dict[str, str]:
        return {t.task_id: t.key for t in await self._jobs.tasks_of_job(job_id)}

    async def load(self) -> int:
        """Resume watching the active agents; each gets a full timeout from now (we were away)."""
        docs = {d.task_id: d async for d in AgentDoc.find({"presence": Presence.ACTIVE.value})}
        if docs:
            for task_id in await self._jobs.terminal_tasks(list(docs)):
                self._ended[task_id] = (docs.pop(task_id).job_id, Presence.DONE)
            await self.flush()
        for doc in docs.values():
            self._active[doc.task_id] = doc
            self._silence.heard(doc.task_id)
        by_job: dict[str, list[str]] = {}
        for doc in docs.values():
            by_job.setdefault(doc.job_id, []).append(doc.task_id)
        for job_id, task_ids in by_job.items():
            self._keys.update(await self._jobs.task_keys(job_id, task_ids))
        return len(self._active)

    async def register(self, event: AgentRegisteredEvent, proof: str) -> Registration:
        """Record the agent of `event.task_id` if `proof` shows it holds that task's key."""
        payload = event.payload
        if not event.task_id or not event.job_id:
            return Registration(False, False, "registration names no job/task")
        key = await self.keys.key(event.job_id, event.task_id)
        if key is None:
            return Registration(False, False, "unknown task")
        if (refusal := task_refusal(event, proof, key)) is not None:
            return Registration(False, False, refusal)
        self._keys[event.task_id] = key
        current = self._active.get(event.task_id)
        if current is not None and current.agent_id == payload.agent_id:
            return Registration(True, False)
        now = _now()
        fields = {
            "task_id": event.task_id,
            "job_id": event.job_id,
            "agent_id": payload.agent_id,
            "hostname": payload.hostname,
            "pid": payload.pid,
            "presence": Presence.ACTIVE.value,
            "registered_at": now,
            "last_seen": now,
        }
        if not await _claim(event.task_id, payload.agent_id, fields):
            return Registration(False, False, "agent already ended (lost, done or replaced)")
        self._ended.pop(event.task_id, None)
        self._active[event.task_id] = AgentDoc(**fields)
        self._silence.heard(event.task_id)
        return Registration(True, True)

    def heartbeat(self, beat: AgentHeartbeatEvent, proof: str) -> str | None:
        """Note a heartbeat; why not when no such active agent serves that task or the beat is
        not proven with the task's key."""
        task_id = beat.task_id or ""
        doc = self._active.get(task_id)
        if doc is None or doc.agent_id != beat.payload.agent_id:
            return "no such active agent"
        if (refusal := task_refusal(beat, proof, self._keys.get(task_id))) is not None:
            return refusal
        self._silence.heard(task_id)
        return None

    def silent(self) -> list[AgentDoc]:
        """Active agents not heard from within the timeout."""
        return [self._active[task_id] for task_id in self._silence.silent()]

    def pardon(self) -> None:
        """A full timeout from now for every active agent: we were deaf (broker away), so
        their silence meant nothing."""
        self._silence.pardon()

    def mark(self, task_ids: list[str], presence: Presence) -> None:
        """Stop watching these tasks' agents; their new presence is saved by the next `flush`."""
        for task_id in task_ids:
            doc = self._active.pop(task_id, None)
            self._keys.pop(task_id, None)
            self._silence.forget(task_id)
            if doc is not None:
                self._ended[task_id] = (doc.job_id, presence)

    async def finish_job(self, job_id: str) -> list[str]:
        """The job ended: stop watching its agents, mark all of them done; returns their tasks."""
        task_ids = [t for t, doc in self._active.items() if doc.job_id == job_id]
        task_ids += [t for t, (job, _) in self._ended.items() if job == job_id]
        self.keys.forget(job_id)
        for task_id in task_ids:
            self._active.pop(task_id, None)
            self._keys.pop(task_id, None)
            self._silence.forget(task_id)
            self._ended.pop(task_id, None)
        await AgentDoc.find({"job_id": job_id}).update({"$set": {"presence": Presence.DONE.value}})
        return task_ids

    async def flush(self) -> None:
        """Save the presence of the agents no longer watched (one write per presence value)."""
        ended, self._ended = self._ended, {}
        try:
            for presence in Presence:
                task_ids = [t for t, (_, p) in ended.items() if p == presence]
                if task_ids:
                    await AgentDoc.find({"task_id": {"$in": task_ids}}).update(
                        {"$set": {"presence": presence.value}}
                    )
                    for task_id in task_ids:
                        ended.pop(task_id)
        finally:
            for task_id, entry in ended.items():  # not saved (database away): next time
                self._ended.setdefault(task_id, entry)


async def _claim(task_id: str, agent_id: str, fields: dict[str, Any]) -> bool:
    """Make `agent_id` the task's agent, retiring the one it replaces; False when `agent_id`
    served the task before (it ended, or was replaced: it may not come back, in whatever order
    its messages arrive) or another registration changed the record meanwhile."""
    collection = AgentDoc.get_pymongo_collection()
    doc = await collection.find_one({"task_id": task_id}, {"agent_id": 1, "retired": 1})
    if doc is None:
        try:
            await collection.insert_one({**fields, "retired": []})
        except DuplicateKeyError:  # another agent registered first
            return False
        return True
    retired = list(doc.get("retired") or [])
    if doc["agent_id"] == agent_id or agent_id in retired:
        return False
    retired = [*retired, doc["agent_id"]][-RETIRED_MAX:]
    done = await collection.update_one(
        {"task_id": task_id, "agent_id": doc["agent_id"]},
        {"$set": {**fields, "retired": retired}},
    )
    return done.matched_count == 1
