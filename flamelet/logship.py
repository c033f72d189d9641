"""Ships the role code's output (`task.log`) to the apiserver in bounded chunks, best effort."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from urllib.parse import quote

from flame_common.logs import get_logger
from flamelet.http import http_request
from schemas.task import MAX_LOG_CHUNK, TASK_KEY_HEADER

log = get_logger(__name__)

BACKLOG = 4 * 1024 * 1024  # a file grown further past what was shipped: skip to its last bytes
BURST = 4  # chunks shipped per interval at most (the rest waits for the next one)
REQUEST_TIMEOUT = 5.0  # seconds per request
MAX_BACKOFF = 30.0  # seconds between attempts while the apiserver fails
FLUSH_ATTEMPTS = 2  # failed sends in a row after which the final flush gives up
ANSWER_LIMIT = 64 * 1024  # bytes of the apiserver's answer to a chunk read at most

Send = Callable[[int, bytes], Awaitable[None]]


class Shipped(Enum):
    SENT = "sent"
    IDLE = "idle"  # nothing new to ship
    FAILED = "failed"


class LogShipper:
    """Reads the task's log past what was shipped, at most `chunk` bytes a request, and hands
    them to `send(offset, data)`. The file itself is the only buffer (no queue grows in memory);
    a send that fails or takes longer than `timeout` is retried later from the same offset, which
    the apiserver stores once. Only a regular file is read (not a link, FIFO or device), without
    blocking: the role code owns its work dir."""

    def __init__(
        self,
        path: Path,
        send: Send,
        *,
        interval: float = 1.0,
        chunk: int = MAX_LOG_CHUNK,
        backlog: int = BACKLOG,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.path = path
        self.send = send
        self.interval, self.chunk, self.backlog, self.timeout = interval, chunk, backlog, timeout
        self.offset = 0  # the file's bytes before it are shipped (or skipped)
        self.skipped = 0  # bytes skipped because the file grew faster than shipping
        self.failures = 0  # consecutive failed sends
        self._warned: set[str] = set()

    def _open(self) -> int | None:
        """A descriptor of the log if it is a regular file (not a link, FIFO or device)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(f"no readable file ({exc.strerror})")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._warn("not a regular file")
            return None
        return fd

    def size(self) -> int | None:
        """Bytes in the log now (None: no regular file there)."""
        fd = self._open()
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def tail_at(self, tail: str, size: int) -> int | None:
        """Where `tail` starts in the log, if it is exactly the log's last bytes up to `size`
        (else None: it was decoded with replacements, or the file changed)."""
        data = tail.encode()
        fd = self._open() if len(data) <= size else None
        if fd is None:
            return None
        try:
            exact = os.pread(fd, len(data), size - len(data)) == data
        finally:
            os.close(fd)
        return size - len(data) if exact else None

    def read(self) -> bytes:
        """The next bytes to ship, past the offset (skipping ahead when too far behind)."""
        fd = self._open()
        if fd is None:
            return b""
        try:
            info = os.fstat(fd)
            if info.st_size - self.offset > self.backlog:
                skip = info.st_size - self.backlog - self.offset
                self.offset += skip
                self.skipped += skip
                self._warn("the output grows faster than it is shipped; older bytes skipped")
            return os.pread(fd, self.chunk, self.offset)
        finally:
            os.close(fd)

    async def ship_once(self) -> Shipped:
        data = self.read()
        if not data:
            return Shipped.IDLE
        try:
            async with asyncio.timeout(self.timeout):
                await self.send(self.offset, data)
        except Exception as exc:  # apiserver away, refusing, slow: retried later, never raised
            self.failures += 1
            if self.failures == 1:
                log.warning("task output not shipped", error=str(exc) or type(exc).__name__)
            return Shipped.FAILED
        self.offset += len(data)
        self.failures = 0
        return Shipped.SENT

    async def run(self) -> None:
        """Ship every `interval` seconds (backing off while sends fail) until cancelled."""
        while True:
            backoff = min(self.interval * 2**self.failures, MAX_BACKOFF)
            await asyncio.sleep(backoff if self.failures else self.interval)
            for _ in range(BURST):
                if await self.ship_once() is not Shipped.SENT:
                    break

    async def flush(self, timeout: float) -> None:
        """Ship what is left once the role has exited, for at most `timeout` seconds, giving
        up after `FLUSH_ATTEMPTS` failed sends in a row (the final status must not wait on an
        apiserver that refuses or is away)."""
        failed = 0
        try:
            async with asyncio.timeout(timeout):
                while (shipped := await self.ship_once()) is not Shipped.IDLE:
                    if shipped is Shipped.FAILED:
                        failed += 1
                        if failed >= FLUSH_ATTEMPTS:
                            log.warning("task output not all shipped", offset=self.offset)
                            return
                        await asyncio.sleep(0.5)
                    else:
                        failed = 0
        except TimeoutError:
            log.warning("task output not all shipped before the task's end", offset=self.offset)

    def _warn(self, what: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(f"task log: {what}", path=str(self.path))


class LogSender:
    """`POST /jobs/{job}/{task}/log?offset=N` with the bytes; the key goes in a header only.
    One short connection a chunk (a full HTTP client costs a flamelet ~10 ms of CPU to make)."""

    def __init__(
        self, apiserver: str, job_id: str, task_id: str, key: str, *, ca_file: str = ""
    ) -> None:
        base = apiserver.rstrip("/")
        self._url = f"{base}/jobs/{quote(job_id, safe='')}/{quote(task_id, safe='')}/log"
        self._headers = {TASK_KEY_HEADER: key}
        self._ca_file = ca_file

    async def __call__(self, offset: int, data: bytes) -> None:
        status, _, answer = await http_request(
            "POST",
            f"{self._url}?offset={offset}",
            accept="application/json",
            timeout=REQUEST_TIMEOUT,
            send=self._headers,
            body=data,
            limit=ANSWER_LIMIT,
            ca_file=self._ca_file,
        )
        if status != 200:
            text = answer[:200].decode("utf-8", errors="replace")
            raise OSError(f"apiserver answered {status} to a log chunk: {text}")
