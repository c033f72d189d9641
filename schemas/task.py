"""Tasks: one worker per role instance, and the status an agent reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import WireModel
from schemas.states import JobState

KEY_HIDDEN = "hidden by system"
TASK_KEY_HEADER = "X-Flame-Task-Key"  # how agents send their task key (never in a URL)
LOG_TAIL_BYTES = 1000


class TaskInfo(WireModel):
    job_id: str
    task_id: str
    role: str
    group_association: dict[str, str] | None = None
    key: str = KEY_HIDDEN
    state: JobState = JobState.READY
    compute_id: str = "default"
    log: str = ""
    timestamp: datetime | None = None


class TaskStatus(WireModel):
    state: JobState
    log: str = Field(default="", max_length=64 * 1024)
    timestamp: datetime | None = None
