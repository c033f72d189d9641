"""The notifier's own collection: agent presence, one document per task, so a restart resumes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from flame_common.documents import utcnow


class Presence(StrEnum):
    ACTIVE = "active"  # registered and heartbeating
    LOST = "lost"  # silent past the heartbeat timeout; agent.lost was published
    DONE = "done"  # its task or job ended; no longer watched


RETIRED_MAX = 32


class AgentDoc(Document):
    """The agent currently serving a task (written only by the notifier)."""

    task_id: str
    job_id: str
    agent_id: str
    hostname: str = ""
    pid: int = 0
    presence: Presence = Presence.ACTIVE
    registered_at: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    # agents that served the task before (the latest RETIRED_MAX): none of them may come back
    retired: list[str] = Field(default_factory=list)

    class Settings:
        name = "agents"
        indexes = [
            IndexModel([("task_id", ASCENDING)], unique=True),
            IndexModel([("job_id", ASCENDING)]),
            IndexModel([("presence", ASCENDING)]),
        ]
