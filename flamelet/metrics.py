"""Relays the role's per-round metrics (JSON lines it appends to a file) as task.metrics events."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydantic

from flame_common.logs import get_logger
from schemas.events import MAX_METRIC_RECORDS, MetricsRecord

log = get_logger(__name__)

METRICS_FILE = "metrics.jsonl"  # in the task's work dir; the role learns it from FLAME_METRICS_FILE
READ_LIMIT = 256 * 1024  # bytes read per pass
LINE_LIMIT = 16 * 1024  # a longer line is skipped
MAX_TASK_RECORDS = 10_000  # rounds relayed per task; the rest is dropped (with one warning)

Send = Callable[[list[MetricsRecord]], Awaitable[None]]


class MetricsRelay:
    """Reads complete lines past what it already read and hands valid records to `send`, at most
    `MAX_METRIC_RECORDS` per call and one call per `interval` seconds. The role only appends to a
    file, so a slow broker never holds its training up; what the role writes that is not a record
    is skipped and counted."""

    def __init__(self, path: Path, send: Send, *, interval: float = 1.0) -> None:
        self.path = path
        self.send = send
        self.interval = interval
        self.sent = 0
        self.skipped = 0
        self._offset = 0

    def poll(self) -> list[MetricsRecord]:
        """The next records (at most MAX_METRIC_RECORDS), advancing past the lines consumed."""
        budget = min(MAX_METRIC_RECORDS, MAX_TASK_RECORDS - self.sent)
        if budget <= 0:
            return []
        data = self._read()
        records: list[MetricsRecord] = []
        start = 0
        while len(records) < budget:
            end = data.find(b"\n", start)
            if end < 0:
                if len(data) - start > LINE_LIMIT:  # an endless line: skip what we have of it
                    self._skip("a line longer than the limit")
                    start = len(data)
                break
            line, start = data[start:end], end + 1
            if len(line) > LINE_LIMIT:
                self._skip("a line longer than the limit")
            elif line.strip():
                try:
                    records.append(MetricsRecord.model_validate(json.loads(line)))
                except (ValueError, pydantic.ValidationError):
                    self._skip("a line that is not a metrics record")
        self._offset += start
        return records

    def _read(self) -> bytes:
        """Up to READ_LIMIT bytes past the offset. The role owns the file: only a regular file is
        read (not a link, FIFO or device), without ever blocking."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            self._skip(f"no readable file ({exc.strerror})")
            return b""
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._skip("no regular file")
                return b""
            return os.pread(fd, READ_LIMIT, self._offset)
        finally:
            os.close(fd)

    async def run(self) -> None:
        """Relay until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self._relay_once()

    async def drain(self, timeout: float) -> None:
        """Relay what is left once the role has exited, for at most `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while await self._relay_once():
                    pass
        except TimeoutError:
            log.warning("metrics not all relayed before the task's end", sent=self.sent)

    async def _relay_once(self) -> bool:
        records = self.poll()
        if not records:
            return False
        await self.send(records)
        self.sent += len(records)
        if self.sent >= MAX_TASK_RECORDS:
            log.warning(
                "the task reached its metrics limit; later rounds are not relayed",
                limit=MAX_TASK_RECORDS,
            )
        return True

    def _skip(self, what: str) -> None:
        if not self.skipped:
            log.warning(f"metrics file: {what}, skipped", path=str(self.path))
        self.skipped += 1
