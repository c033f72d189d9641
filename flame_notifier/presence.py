"""Presence book: which agent serves which task, when it was last heard, and who went silent."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flame_common.documents import TaskDoc
from flame_common.logs import get_logger
from flame_notifier.documents import AgentDoc, Presence
from schemas.events import AgentRegistered, EventBase

log = get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Registration:
    """Outcome of a registration: `changed` means a new agent now serves the task."""

    accepted: bool
    changed: bool
    reason: str = ""


class PresenceBook:
    """Active agents in memory (heartbeats are frequent), persisted to `AgentDoc` for restarts."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timedelta(seconds=timeout)
        self._active: dict[str, AgentDoc] = {}
        self._dirty: set[str] = set()

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._active

    async def load(self) -> int:
        """Resume watching the active agents; each gets a full timeout from now (we were away)."""
        now = _now()
        async for doc in AgentDoc.find({"presence": Presence.ACTIVE.value}):
            doc.last_seen = max(doc.last_seen, now)
            self._active[doc.task_id] = doc
        return len(self._active)

    async def register(self, event: EventBase, key: str) -> Registration:
        """Record the agent of `event.task_id` if `key` is that task's key."""
        payload = event.payload
        assert isinstance(payload, AgentRegistered)
        if not event.task_id or not event.job_id:
            return Registration(False, False, "registration names no job/task")
        task = await TaskDoc.find_one({"job_id": event.job_id, "task_id": event.task_id})
        if task is None:
            return Registration(False, False, "unknown task")
        if not hmac.compare_digest(task.key.encode(), key.encode()):
            return Registration(False, False, "wrong task key")
        current = self._active.get(event.task_id)
        if current is not None and current.agent_id == payload.agent_id:
            return Registration(True, False)
        doc = await AgentDoc.find_one({"task_id": event.task_id})
        if doc is not None and doc.agent_id == payload.agent_id and doc.presence != Presence.ACTIVE:
            return Registration(False, False, f"agent already {doc.presence.value}")
        now = _now()
        fields = {
            "task_id": event.task_id,
            "job_id": event.job_id,
            "agent_id": payload.agent_id,
            "hostname": payload.hostname,
            "pid": payload.pid,
            "presence": Presence.ACTIVE,
            "registered_at": now,
            "last_seen": now,
        }
        if doc is None:
            doc = AgentDoc(**fields)
            await doc.insert()
        else:
            for name, value in fields.items():
                setattr(doc, name, value)
            await doc.save()
        self._active[event.task_id] = doc
        return Registration(True, True)

    def heartbeat(self, task_id: str, agent_id: str) -> bool:
        """Note a heartbeat; False when no such active agent serves that task."""
        doc = self._active.get(task_id)
        if doc is None or doc.agent_id != agent_id:
            return False
        doc.last_seen = _now()
        self._dirty.add(task_id)
        return True

    def silent(self) -> list[AgentDoc]:
        """Active agents not heard from within the timeout."""
        limit = _now() - self._timeout
        return [doc for doc in self._active.values() if doc.last_seen < limit]

    async def mark(self, task_ids: list[str], presence: Presence) -> None:
        """Stop watching these tasks' agents and persist their new presence."""
        for task_id in task_ids:
            self._active.pop(task_id, None)
            self._dirty.discard(task_id)
        if task_ids:
            await AgentDoc.find({"task_id": {"$in": task_ids}}).update(
                {"$set": {"presence": presence.value}}
            )

    async def finish_job(self, job_id: str) -> list[str]:
        """The job ended: stop watching its agents; returns their task ids."""
        task_ids = [d.task_id async for d in AgentDoc.find({"job_id": job_id})]
        await self.mark(task_ids, Presence.DONE)
        return task_ids

    async def flush(self) -> None:
        """Persist the latest heartbeat times (so a restarted notifier knows them)."""
        dirty, self._dirty = self._dirty, set()
        for task_id in dirty:
            doc = self._active.get(task_id)
            if doc is not None:
                await AgentDoc.find_one({"task_id": task_id}).update(
                    {"$set": {"last_seen": doc.last_seen}}
                )
