"""Splitting payloads into broker-sized chunks and rebuilding them per (sender, message id)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flame_sdk.backends.frames import FrameError, Header

DEFAULT_MAX_MESSAGE = 1 << 30  # 1 GiB: larger reassembled payloads are refused


def split(data: bytes, chunk_size: int) -> list[memoryview]:
    """Zero-copy views of `data`, each at most `chunk_size` bytes; an empty payload is one chunk."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    view = memoryview(data)
    if not view:
        return [view]
    return [view[i : i + chunk_size] for i in range(0, len(view), chunk_size)]


@dataclass
class _Partial:
    count: int
    total: int
    started: float
    parts: list[memoryview | None]
    size: int = 0
    done: set[int] = field(default_factory=set)


class Reassembler:
    """Rebuilds the chunked messages of one scope; inconsistent chunks raise FrameError.

    Messages are keyed by (sender end id, message id), so concurrent messages of one sender and
    messages of different senders never mix. Chunks may arrive in any order; duplicates are
    ignored. Partial messages older than `ttl` seconds are discarded.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE, ttl: float = 600.0) -> None:
        self.max_message = max_message
        self.ttl = ttl
        self._partials: dict[tuple[str, int], _Partial] = {}

    @property
    def pending(self) -> int:
        return len(self._partials)

    def add(self, header: Header, payload: memoryview) -> bytes | None:
        """Take one chunk; return the whole payload once its last chunk arrived."""
        if header.total > self.max_message:
            raise FrameError(f"message of {header.total} bytes exceeds {self.max_message}")
        if header.count == 1:
            if len(payload) != header.total:
                raise FrameError(f"payload of {len(payload)} bytes, header says {header.total}")
            return bytes(payload)
        now = time.monotonic()
        self._expire(now)
        key = (header.sender, header.message_id)
        partial = self._partials.get(key)
        if partial is None:
            if header.count > header.total + 1:
                raise FrameError(f"{header.count} chunks for {header.total} bytes")
            partial = _Partial(header.count, header.total, now, [None] * header.count)
            self._partials[key] = partial
        elif partial.count != header.count or partial.total != header.total:
            del self._partials[key]
            raise FrameError("chunk disagrees with earlier chunks of its message")
        if header.index in partial.done:
            return None
        partial.size += len(payload)
        if partial.size > partial.total:
            del self._partials[key]
            raise FrameError(f"chunks exceed the announced {partial.total} bytes")
        partial.parts[header.index] = payload
        partial.done.add(header.index)
        if len(partial.done) < partial.count:
            return None
        del self._partials[key]
        if partial.size != partial.total:
            raise FrameError(f"message of {partial.size} bytes, header says {partial.total}")
        return b"".join(p for p in partial.parts if p is not None)

    def forget(self, sender: str) -> None:
        """Drop the partial messages of a sender that left or died."""
        for key in [k for k in self._partials if k[0] == sender]:
            del self._partials[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._partials.items() if now - p.started > self.ttl]:
            del self._partials[key]
