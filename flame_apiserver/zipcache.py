"""Bounded in-memory LRU of role code zips served to agents, with one build per key in flight."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable


class ZipCache:
    """Least-recently-used bytes by key, bounded in entries and in total bytes.

    Concurrent `get`s of a missing key share one `build`; a failed build is not cached.
    Values larger than `max_bytes` are returned but not kept.
    """

    def __init__(self, max_entries: int = 128, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._building: dict[Hashable, asyncio.Future[bytes]] = {}

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: Hashable, build: Callable[[], Awaitable[bytes]]) -> bytes:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
            return value
        task = self._building.get(key)
        if task is None:  # a task of its own: a cancelled request does not cancel the build
            task = self._building[key] = asyncio.ensure_future(build())
            task.add_done_callback(lambda done: self._built(key, done))
        return await asyncio.shield(task)

    def _built(self, key: Hashable, task: asyncio.Future[bytes]) -> None:
        self._building.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._put(key, task.result())

    def _put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        self._data[key] = value
        self._size += len(value)
        while len(self._data) > self.max_entries or self._size > self.max_bytes:
            _, evicted = self._data.popitem(last=False)
            self._size -= len(evicted)
