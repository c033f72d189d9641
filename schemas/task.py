"""Tasks: one worker per role instance, and the status an agent reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import WireModel
from schemas.states import JobState

KEY_HIDDEN = "hidden by system"
TASK_KEY_HEADER = "X-Flame-Task-Key"  # how agents send their task key (never in a URL)
LOG_TAIL_BYTES = 1000
# The file a role appends its per-round metrics to, for its agent to relay (JSON lines).
METRICS_FILE_ENV = "FLAME_METRICS_FILE"


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


class RoundMetrics(WireModel):
    """What one task recorded for one round (from the job's `task.metrics` events)."""

    task_id: str
    role: str
    round: int
    metrics: dict[str, float]
    timestamp: datetime | None = None
