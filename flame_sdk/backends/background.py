"""Tasks a backend runs on the side: kept referenced, failures logged, cancelled together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any

from flame_common.logs import get_logger

log = get_logger(__name__)


class Background:
    """The side tasks of one backend; `what` names them in the log line of a failed one."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(f"{self.what} task failed", error=repr(task.exception()))

    async def cancel(self, others: Iterable[asyncio.Task[Any] | None] = ()) -> None:
        """Cancel every task (and `others`) and wait until each has ended."""
        tasks = [t for t in (*others, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
