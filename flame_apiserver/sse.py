"""Server-sent events of one job's log: replay from a seq number, follow live, end when done."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from flame_common.jobs_read import JobReads
from schemas.errors import Unavailable
from schemas.states import JobState


@dataclass(frozen=True)
class StreamTiming:
    poll_seconds: float = 0.25  # how often the log is read while nothing new arrived
    keepalive_seconds: float = 15.0  # comment line sent when idle, so proxies keep the stream
    batch: int = 200


class StreamSlots:
    """Counts the open event streams: at most `total` in the apiserver and `per_user` per user;
    one more is refused (503) rather than holding a poller and a socket."""

    def __init__(self, total: int, per_user: int) -> None:
        self.total, self.per_user = total, per_user
        self._open: dict[str, int] = {}

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def take(self, user: str) -> Callable[[], None]:
        """Claim a slot for `user`; returns its release (idempotent). Raises TooManyStreams."""
        if self.open >= self.total:
            raise TooManyStreams(f"{self.total} event streams are open (FLAME_MAX_EVENT_STREAMS)")
        if self._open.get(user, 0) >= self.per_user:
            raise TooManyStreams(
                f"user {user!r} has {self.per_user} event streams open "
                "(FLAME_MAX_EVENT_STREAMS_PER_USER)"
            )
        self._open[user] = self._open.get(user, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[user] -= 1
                if not self._open[user]:
                    del self._open[user]

        return release


class TooManyStreams(Unavailable):
    """No event-stream slot is free; retry later."""


def frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


async def _finished(jobs: JobReads, job_id: str, cursor: int) -> bool:
    """True when the job is gone or terminal and every event it logged was read."""
    job = await jobs.job(job_id)
    if job is None:
        return True
    return JobState(job.state).is_terminal and cursor >= job.last_seq


async def stream_job_events(
    jobs: JobReads, job_id: str, after: int, timing: StreamTiming = StreamTiming()
) -> AsyncIterator[bytes]:
    """Yield SSE frames for every event after `after`, then follow the log until the job is done.

    The stream ends after two consecutive idle polls that find the job terminal (or deleted)
    with nothing left to send, so events appended right after the final state still go out.
    """
    cursor = after
    idle_since = time.monotonic()
    done_polls = 0
    yield b"retry: 2000\n\n"
    while True:
        events = await jobs.events_after(job_id, cursor, timing.batch)
        for event in events:
            cursor = event["seq"]
            yield frame(event)
        if events:
            idle_since = time.monotonic()
            done_polls = 0
            continue
        done_polls = done_polls + 1 if await _finished(jobs, job_id, cursor) else 0
        if done_polls >= 2:
            return
        if time.monotonic() - idle_since >= timing.keepalive_seconds:
            idle_since = time.monotonic()
            yield b": keep-alive\n\n"
        await anyio.sleep(timing.poll_seconds)
