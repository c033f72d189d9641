"""Tasks: one worker per role instance, and the status an agent reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import Field

from schemas.base import WireModel
from schemas.states import JobState

KEY_HIDDEN = "hidden by system"
TASK_KEY_HEADER = "X-Flame-Task-Key"  # how agents send their task key (never in a URL)
LOG_TAIL_BYTES = 1000
# The file a role appends its per-round metrics to, for its agent to relay (JSON lines).
METRICS_FILE_ENV = "FLAME_METRICS_FILE"
# A task's output as agents ship it (POST /jobs/{job}/{task}/log): bytes per request at most.
MAX_LOG_CHUNK = 256 * 1024
# Headers of a task's log read (GET /users/{user}/jobs/{job}/tasks/{task}/logs): the offset of
# the first byte returned (past the one asked for when older bytes were dropped), the offset to
# ask for next, and whether the task ended (no byte will follow past what is stored).
LOG_START_HEADER = "X-Flame-Log-Start"
LOG_NEXT_HEADER = "X-Flame-Log-Next"
LOG_ENDED_HEADER = "X-Flame-Log-Ended"
# Seconds an agent gives the rest of a task's output to reach the apiserver once the role code
# exited (sent alongside the final status, which carries the output's size): past them after the
# final status, a log read no longer waits for missing bytes.
FINAL_LOG_FLUSH = 5.0


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


def task_labels(tasks: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Task id -> `role/index` for (role, task id) pairs: the index counts a role's tasks in task
    id order, the order `GET .../tasks` lists them in (`trainer/0` is the first trainer)."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for role, task_id in sorted(tasks):
        labels[task_id] = f"{role}/{counts.get(role, 0)}"
        counts[role] = counts.get(role, 0) + 1
    return labels
