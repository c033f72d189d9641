"""Task keys of recently seen jobs: one read per job, again only for a task not among them."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

Loader = Callable[[str], Awaitable[dict[str, str]]]  # job id -> {task id: key} of all its tasks

CACHED_KEYS = 200_000  # keys held in memory (~30 MB; least recently used jobs dropped first)


class TaskKeys:
    """A bounded LRU of each job's task keys, read through `load`.

    A job's keys are read on first use and read again when a task is asked for that is not
    among them (tasks added by an update; an unknown task costs one read, as without a cache).
    Keys never change for a task, so nothing else invalidates an entry; `forget` drops an
    ended job. The cache holds at most `capacity` keys in all (the job used last always stays).
    """

    def __init__(self, load: Loader, capacity: int = CACHED_KEYS) -> None:
        self._load = load
        self._capacity = capacity
        self._jobs: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._size = 0  # keys held
        self._reading: dict[str, asyncio.Future[dict[str, str]]] = {}  # job -> read under way

    async def of(self, job_id: str, task_ids: Iterable[str]) -> dict[str, str]:
        """The job's keys (task id -> key), read again if one of `task_ids` is missing; callers
        asking while a read of the job is under way share it (its agents register at once)."""
        wanted = list(task_ids)
        keys = self._jobs.get(job_id)
        if keys is not None and all(t in keys for t in wanted):
            self._jobs.move_to_end(job_id)
            return keys
        reading = self._reading.get(job_id)
        if reading is not None:
            keys = await asyncio.shield(reading)
            if all(t in keys for t in wanted):
                return keys
        reading = self._reading[job_id] = asyncio.ensure_future(self._load(job_id))
        try:
            keys = await asyncio.shield(reading)
        finally:
            if self._reading.get(job_id) is reading:
                del self._reading[job_id]
        self._put(job_id, keys)
        return keys

    def learn(self, job_id: str, keys: dict[str, str], *, complete: bool) -> None:
        """Keys their maker hands over (no read needed later): all of a new job's (`complete`),
        or tasks added to a job, kept only when the job's other keys are cached."""
        cached = self._jobs.get(job_id)
        if cached is not None:
            self._put(job_id, {**cached, **keys})
        elif complete:
            self._put(job_id, dict(keys))

    def _put(self, job_id: str, keys: dict[str, str]) -> None:
        self.forget(job_id)
        self._jobs[job_id] = keys
        self._size += len(keys)
        while self._size > self._capacity and len(self._jobs) > 1:
            self._size -= len(self._jobs.popitem(last=False)[1])

    async def key(self, job_id: str, task_id: str) -> str | None:
        """The task's key, or None when the job has no such task."""
        return (await self.of(job_id, [task_id])).get(task_id)

    def forget(self, job_id: str) -> None:
        self._size -= len(self._jobs.pop(job_id, {}))

    def __len__(self) -> int:
        return len(self._jobs)
