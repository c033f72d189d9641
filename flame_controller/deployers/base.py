"""The Deployer port: start one worker per task, stop a job's workers, stop everything on close."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker needs: its task, the task key and where the apiserver is."""

    job_id: str
    task_id: str
    key: str
    apiserver: str


# Called when a worker ends on its own with a failure (job id, task id, reason).
FailureCallback = Callable[[str, str, str], Awaitable[None]]


class Deployer(abc.ABC):
    """Creates workers on one compute. Implementations must be idempotent per (job, task)."""

    on_failure: FailureCallback | None = None

    async def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Prepare before the first `start` (nothing by default)."""

    @abc.abstractmethod
    async def start(self, spec: WorkerSpec) -> str:
        """Start (or find already running) the worker of `spec`; returns its worker id."""

    @abc.abstractmethod
    async def stop(self, job_id: str, task_ids: list[str]) -> None:
        """Stop and remove these workers (unknown ones are ignored); returns when they are gone."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Shut down: local workers are stopped (they cannot outlive us), cluster ones go on."""
