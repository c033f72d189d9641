"""Task keys of recently seen jobs: one read per job, again only for a task not among them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

Loader = Callable[[str], Awaitable[dict[str, str]]]  # job id -> {task id: key} of all its tasks

CACHED_JOBS = 10_000  # jobs whose keys stay in memory (least recently used dropped first)


class TaskKeys:
    """A bounded LRU of each job's task keys, read through `load`.

    A job's keys are read on first use and read again when a task is asked for that is not
    among them (tasks added by an update; an unknown task costs one read, as without a cache).
    Keys never change for a task, so nothing else invalidates an entry; `forget` drops an
    ended job.
    """

    def __init__(self, load: Loader, capacity: int = CACHED_JOBS) -> None:
        self._load = load
        self._capacity = capacity
        self._jobs: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def of(self, job_id: str, task_ids: Iterable[str]) -> dict[str, str]:
        """The job's keys (task id -> key), read again if one of `task_ids` is missing."""
        keys = self._jobs.get(job_id)
        if keys is None or any(t not in keys for t in task_ids):
            keys = self._jobs[job_id] = await self._load(job_id)
            while len(self._jobs) > self._capacity:
                self._jobs.popitem(last=False)
        self._jobs.move_to_end(job_id)
        return keys

    async def key(self, job_id: str, task_id: str) -> str | None:
        """The task's key, or None when the job has no such task."""
        return (await self.of(job_id, [task_id])).get(task_id)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._jobs)
