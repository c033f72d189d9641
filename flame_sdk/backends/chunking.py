"""Splitting payloads into broker-sized chunks and rebuilding them per (sender, message id)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flame_sdk.backends.base import Parts
from flame_sdk.backends.frames import FrameError, Header

DEFAULT_MAX_MESSAGE = 1 << 30  # 1 GiB: larger reassembled payloads are refused


def as_views(data: Parts) -> list[memoryview]:
    """The buffers of a payload as flat byte views (empty ones left out)."""
    buffers = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
    views = [memoryview(b).cast("B") for b in buffers]
    return [v for v in views if len(v)]


def payload_size(data: Parts) -> int:
    return sum(len(v) for v in as_views(data))


def split(data: Parts, chunk_size: int) -> list[memoryview]:
    """Zero-copy views of `data`, each at most `chunk_size` bytes; an empty payload is one chunk.

    A payload given as several buffers is cut as their concatenation: a chunk that straddles
    two buffers is the only copy made. Every chunk but the last is exactly `chunk_size` bytes.
    """
    return [
        piece[0] if len(piece) == 1 else memoryview(b"".join(piece))
        for piece in split_parts(data, chunk_size)
    ]


def split_parts(data: Parts, chunk_size: int) -> list[list[memoryview]]:
    """`split` without joining: each chunk as the list of views it is made of (no copy)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunks: list[list[memoryview]] = []
    current: list[memoryview] = []
    room = chunk_size
    for view in as_views(data):
        while view:
            take = view[:room]
            current.append(take)
            view, room = view[len(take) :], room - len(take)
            if not room:
                chunks.append(current)
                current, room = [], chunk_size
    if current or not chunks:
        chunks.append(current or [memoryview(b"")])
    return chunks


@dataclass
class _Partial:
    count: int
    total: int
    started: float
    chunk: int  # the size of every chunk but the last
    buffer: bytearray
    size: int = 0
    done: set[int] = field(default_factory=set)

    def span(self, index: int) -> tuple[int, int]:
        start = index * self.chunk
        return start, min(start + self.chunk, self.total)


def _chunk_size(header: Header, length: int) -> int:
    """The senders' chunk size implied by one chunk (every chunk but the last has that size)."""
    if header.index < header.count - 1:
        return length
    rest, last = header.total - length, header.count - 1
    return rest // last if rest % last == 0 else 0


class Reassembler:
    """Rebuilds the chunked messages of one scope; inconsistent chunks raise FrameError.

    Messages are keyed by (sender end id, message id), so concurrent messages of one sender and
    messages of different senders never mix. Chunks may arrive in any order; duplicates are
    ignored, also those of the last `remember` messages already rebuilt (a sender re-publishes
    what the broker did not confirm before an outage, so a frame may come twice). Partial
    messages older than `ttl` seconds are discarded. Each chunk is copied into
    one buffer of the announced size as it arrives (the chunk itself is not kept), and that
    `bytearray` is the result: writable, so that decoders may hand out views of it.
    """

    def __init__(
        self, max_message: int = DEFAULT_MAX_MESSAGE, ttl: float = 600.0, remember: int = 4096
    ) -> None:
        self.max_message = max_message
        self.ttl = ttl
        self.remember = remember
        self._partials: dict[tuple[str, int], _Partial] = {}
        self._rebuilt: dict[tuple[str, int], None] = {}  # insertion-ordered, oldest first

    @property
    def pending(self) -> int:
        return len(self._partials)

    def add(self, header: Header, payload: memoryview) -> bytearray | None:
        """Take one chunk; return the whole payload once its last chunk arrived."""
        if header.total > self.max_message:
            raise FrameError(f"message of {header.total} bytes exceeds {self.max_message}")
        key = (header.sender, header.message_id)
        if key in self._rebuilt:
            return None
        if header.count == 1:
            if len(payload) != header.total:
                raise FrameError(f"payload of {len(payload)} bytes, header says {header.total}")
            self._note_rebuilt(key)
            return bytearray(payload)
        now = time.monotonic()
        self._expire(now)
        partial = self._partials.get(key)
        if partial is None:
            chunk = _chunk_size(header, len(payload))
            if chunk < 1 or header.count > header.total:
                raise FrameError(f"{header.count} chunks for {header.total} bytes")
            if (header.count - 1) * chunk >= header.total:
                raise FrameError(f"chunks exceed the announced {header.total} bytes")
            if header.count * chunk < header.total:
                raise FrameError(f"{header.count} chunks of {chunk} bytes for {header.total}")
            partial = _Partial(header.count, header.total, now, chunk, bytearray(header.total))
            self._partials[key] = partial
        elif partial.count != header.count or partial.total != header.total:
            del self._partials[key]
            raise FrameError("chunk disagrees with earlier chunks of its message")
        if header.index in partial.done:
            return None
        start, end = partial.span(header.index)
        if len(payload) != end - start:
            del self._partials[key]
            raise FrameError(
                f"chunk {header.index} of {len(payload)} bytes, expected {end - start}"
            )
        partial.buffer[start:end] = payload
        partial.size += len(payload)
        partial.done.add(header.index)
        if len(partial.done) < partial.count:
            return None
        del self._partials[key]
        self._note_rebuilt(key)
        return partial.buffer

    def _note_rebuilt(self, key: tuple[str, int]) -> None:
        self._rebuilt[key] = None
        if len(self._rebuilt) > self.remember:
            del self._rebuilt[next(iter(self._rebuilt))]

    def forget(self, sender: str) -> None:
        """Drop the partial messages of a sender that left or died."""
        for key in [k for k in self._partials if k[0] == sender]:
            del self._partials[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._partials.items() if now - p.started > self.ttl]:
            del self._partials[key]
