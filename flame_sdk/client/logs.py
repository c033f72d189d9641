"""Task output: what role code printed, read back whole or followed live, per task or job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from flame_sdk.client.base import Resource
from flame_sdk.client.http import Transport
from flame_sdk.client.tasks import TasksClient
from schemas.errors import FlameError, NotFound
from schemas.task import LOG_ENDED_HEADER, LOG_NEXT_HEADER, LOG_START_HEADER, task_labels

MAX_TASKS = 10_000  # tasks of a job read to name them
LONG_POLL = 10.0  # seconds one read of a followed task may wait for new bytes
POLL = 1.0  # seconds between rounds of reads when following every task of a job
MAX_READS = 64  # reads of one task's stored output in one `logs()` call (1 MiB each at most)


@dataclass(frozen=True)
class TaskLog:
    """Bytes `[start, next)` of a task's output; `start` is past the offset asked for when the
    apiserver dropped older bytes. `ended`: the task ended and nothing follows `next`."""

    task_id: str
    label: str  # role/index, as `flamectl get tasks` lists the role's tasks (`trainer/0`)
    start: int
    data: bytes
    next: int
    ended: bool


class LogsClient(Resource):
    def __init__(self, transport: Transport, user: str, tasks: TasksClient) -> None:
        super().__init__(transport, user)
        self._tasks = tasks

    async def labels(self, job_id: str) -> dict[str, str]:
        """Task id -> `role/index` for every task of the job."""
        tasks = await self._tasks.list(job_id, limit=MAX_TASKS)
        return task_labels((t.role, t.task_id) for t in tasks)

    async def resolve(self, job_id: str, task: str) -> tuple[str, str]:
        """(task id, label) of `task`: a task id, a `role/index`, a role with a single task or
        a unique prefix of a task id."""
        labels = await self.labels(job_id)
        if task in labels:
            return task, labels[task]
        by_label = {label: task_id for task_id, label in labels.items()}
        for name in (task, f"{task}/0"):
            if name in by_label and (name == task or f"{task}/1" not in by_label):
                return by_label[name], name
        prefixed = [t for t in labels if t.startswith(task)] if len(task) >= 4 else []
        if len(prefixed) == 1:
            return prefixed[0], labels[prefixed[0]]
        names = ", ".join(sorted(by_label)[:10]) + (", ..." if len(by_label) > 10 else "")
        raise NotFound(
            f"job '{job_id}' has no task '{task}' (give a task id or a role/index: {names})"
        )

    async def read(
        self, job_id: str, task_id: str, label: str = "", *, offset: int = 0, wait: float = 0
    ) -> TaskLog:
        """One read of the task's stored output from `offset` (at most 1 MiB); with `wait`, an
        answer that would be empty waits up to that many seconds for bytes or the task's end."""
        params: dict[str, float | int] = {"offset": offset}
        if wait > 0:
            params["wait"] = wait
        response = await self._t.request(
            "GET", self._path("jobs", job_id, "tasks", task_id, "logs"), params=params
        )
        try:
            start = int(response.headers[LOG_START_HEADER])
            after = int(response.headers[LOG_NEXT_HEADER])
        except (KeyError, ValueError) as exc:
            raise FlameError(f"the apiserver's log answer lacks header {exc}") from None
        ended = response.headers.get(LOG_ENDED_HEADER) == "true"
        return TaskLog(task_id, label or task_id, start, response.content, after, ended)

    async def task(self, job_id: str, task_id: str, label: str = "", offset: int = 0) -> TaskLog:
        """Everything stored of the task's output from `offset`, in one piece."""
        first = part = await self.read(job_id, task_id, label, offset=offset)
        parts = [part.data]
        for _ in range(MAX_READS):
            if not part.data or part.ended:
                break
            part = await self.read(job_id, task_id, label, offset=part.next)
            if part.start != first.start + sum(map(len, parts)):
                break  # bytes were dropped meanwhile: stop at the gap
            parts.append(part.data)
        data = b"".join(parts)
        return TaskLog(task_id, first.label, first.start, data, first.start + len(data), part.ended)

    async def follow(
        self, job_id: str, tasks: dict[str, str], offsets: dict[str, int] | None = None
    ) -> AsyncIterator[TaskLog]:
        """New output of `tasks` (id -> label) as it is shipped, until every one of them ended.

        One task is long-polled; several are read in turn, a round a second."""
        at = {t: (offsets or {}).get(t, 0) for t in tasks}
        wait = max(0.0, min(LONG_POLL, self._t.read_timeout - 5))
        while at:
            single = len(at) == 1 and wait > 0
            for task_id in list(at):
                part = await self.read(
                    job_id, task_id, tasks[task_id], offset=at[task_id], wait=wait if single else 0
                )
                at[task_id] = part.next
                if part.data or part.ended:
                    yield part
                if part.ended:
                    del at[task_id]
            if at and not single:
                await asyncio.sleep(POLL)
