"""Jobs: create/update/delete, start/stop, status, the event log and live progress."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from flame_sdk.client.base import Resource
from flame_sdk.client.events import follow_stream, read_pages
from flame_sdk.client.http import Transport
from flame_sdk.client.logs import LogsClient, TaskLog
from flame_sdk.client.progress import JobProgress, apply
from flame_sdk.client.tasks import TasksClient
from schemas.errors import Unavailable
from schemas.events import EventBase
from schemas.job import JobSpec, JobStatus
from schemas.states import JobState
from schemas.task import RoundMetrics

COMMAND_ATTEMPTS = 3  # a job command that met an unavailable apiserver or controller is sent
RETRY_DELAY = 0.5  # again after this many seconds (doubled per attempt), under the same key
IDEMPOTENCY_HEADER = "Idempotency-Key"


class JobsClient(Resource):
    def __init__(self, transport: Transport, user: str, tasks: TasksClient) -> None:
        super().__init__(transport, user)
        self._tasks = tasks
        self.task_logs = LogsClient(transport, user, tasks)

    async def create(self, spec: JobSpec) -> JobStatus:
        """Create a job (tasks are expanded at once); it starts in state `ready`."""
        body = await self._command("POST", self._path("jobs"), json=spec.wire())
        return JobStatus.model_validate(body)

    async def list(self, *, limit: int = 100) -> builtins.list[JobStatus]:
        body = await self._t.json("GET", self._path("jobs"), params={"limit": limit})
        return [JobStatus.model_validate(j) for j in body or []]

    async def get(self, job_id: str) -> JobSpec:
        body = await self._t.json("GET", self._path("jobs", job_id))
        return JobSpec.model_validate(body)

    async def status(self, job_id: str) -> JobStatus:
        body = await self._t.json("GET", self._path("jobs", job_id, "status"))
        return JobStatus.model_validate(body)

    async def metrics(
        self, job_id: str, *, role: str | None = None, task_id: str | None = None
    ) -> builtins.list[RoundMetrics]:
        """Per-round metrics the job's tasks recorded (`update_metrics`, round runtimes), by
        role, task and round; only `role`'s tasks, or one task, when given."""
        params = {k: v for k, v in (("role", role), ("taskId", task_id)) if v is not None}
        body = await self._t.json("GET", self._path("jobs", job_id, "metrics"), params=params)
        return [RoundMetrics.model_validate(m) for m in body or []]

    async def logs(
        self, job_id: str, task: str | None = None, offset: int = 0
    ) -> builtins.list[TaskLog]:
        """What the job's tasks printed (their role code's stdout and stderr, as far as the
        apiserver keeps it), one `TaskLog` per task by role/index; only `task`'s (an id, a
        `role/index`, a role with one task or a unique id prefix) from `offset` when given."""
        targets = await self._log_targets(job_id, task)
        return [
            await self.task_logs.task(job_id, t, label, offset if task else 0)
            for t, label in targets.items()
        ]

    async def follow_logs(
        self, job_id: str, task: str | None = None, offset: int = 0
    ) -> AsyncIterator[TaskLog]:
        """The output of the job's tasks (or of `task`, from `offset`) as they print it: what is
        stored first, then new bytes, until the task (every task of the job) ended."""
        targets = await self._log_targets(job_id, task)
        offsets = {t: offset for t in targets} if task else {}
        async for part in self.task_logs.follow(job_id, targets, offsets):
            yield part

    async def _log_targets(self, job_id: str, task: str | None) -> dict[str, str]:
        """Task id -> role/index of the task named (every task of the job without one)."""
        if task is None:
            labels = await self.task_logs.labels(job_id)
            return dict(sorted(labels.items(), key=lambda item: _label_order(item[1])))
        task_id, label = await self.task_logs.resolve(job_id, task)
        return {task_id: label}

    async def update(self, job_id: str, spec: JobSpec) -> JobStatus:
        """Replace the spec of a job that is not active (tasks are rebuilt)."""
        body = await self._command("PUT", self._path("jobs", job_id), json=spec.wire())
        return await self._status_from(job_id, body)

    async def delete(self, job_id: str) -> None:
        await self._command("DELETE", self._path("jobs", job_id))

    async def start(self, job_id: str) -> JobStatus:
        return await self._request_state(job_id, JobState.STARTING)

    async def stop(self, job_id: str) -> JobStatus:
        return await self._request_state(job_id, JobState.STOPPING)

    async def events(
        self, job_id: str, *, follow: bool = False, after: int = 0, page_size: int = 200
    ) -> AsyncIterator[EventBase]:
        """The job's events in seq order after `after`; with `follow`, live until it ends."""
        if not follow:
            async for event in read_pages(
                self._t, self._path("jobs", job_id, "events"), after=after, page_size=page_size
            ):
                yield event
            return

        async def finished() -> bool:
            return (await self.status(job_id)).state.is_terminal

        async for event in follow_stream(
            self._t, self._path("jobs", job_id, "events", "stream"), after=after, finished=finished
        ):
            yield event

    async def watch(self, job_id: str) -> AsyncIterator[JobProgress]:
        """Progress of the job: one snapshot now, then one per change, ending when it is terminal.

        The job's log is folded from the start (so state matches the log), then followed live.
        The last snapshot's task states are re-read from the server.
        """
        progress = JobProgress(job_id=job_id)
        async for event in self.events(job_id):
            progress = apply(progress, event)
        progress = replace(progress, event=None)
        if progress.done:
            yield await self._final(progress)
            return
        yield progress
        async for event in self.events(job_id, follow=True, after=progress.seq):
            changed = apply(progress, event)
            if changed is progress:
                continue
            progress = changed
            if progress.done:
                yield await self._final(progress)
                return
            yield progress
        status = await self.status(job_id)  # the stream ended without a terminal event in it
        yield await self._final(replace(progress, state=status.state, reason=status.reason))

    async def _final(self, progress: JobProgress) -> JobProgress:
        tasks = await self._tasks.list(progress.job_id, limit=10_000)
        return replace(progress, tasks={t.task_id: t.state for t in tasks})

    async def _request_state(self, job_id: str, state: JobState) -> JobStatus:
        body = await self._command(
            "PUT", self._path("jobs", job_id, "status"), json={"id": job_id, "state": state.value}
        )
        return await self._status_from(job_id, body)

    async def _command(self, method: str, path: str, *, json: Any = None) -> Any:
        """Send a job command under a fresh `Idempotency-Key`; when the apiserver or controller
        is unavailable (503, no answer) send it again with the same key, so it runs once."""
        headers = {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
        delay = RETRY_DELAY
        for _ in range(COMMAND_ATTEMPTS - 1):
            try:
                return await self._t.json(method, path, json=json, headers=headers)
            except Unavailable:
                await asyncio.sleep(delay)
                delay *= 2
        return await self._t.json(method, path, json=json, headers=headers)

    async def _status_from(self, job_id: str, body: Any) -> JobStatus:
        if isinstance(body, dict) and "state" in body:
            return JobStatus.model_validate(body)
        return await self.status(job_id)


def _label_order(label: str) -> tuple[str, int]:
    role, _, index = label.rpartition("/")
    return role, int(index) if index.isdigit() else 0
