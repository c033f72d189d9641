"""Splitting payloads into broker-sized chunks and rebuilding them per (sender, message id)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flame_common.logs import get_logger
from flame_sdk.backends.base import Parts
from flame_sdk.backends.frames import FrameError, Header

log = get_logger(__name__)

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


@dataclass(frozen=True)
class ReassemblyLimits:
    """What one scope's incomplete messages may hold, so that forged chunk headers cannot make a
    receiver allocate more than the bytes it was actually sent, nor keep them for long."""

    max_message: int = DEFAULT_MAX_MESSAGE  # announced size of one message
    sender_messages: int = 8  # incomplete messages of one sender at a time
    sender_bytes: int = DEFAULT_MAX_MESSAGE  # bytes received of one sender's incomplete messages
    total_bytes: int = 4 * DEFAULT_MAX_MESSAGE  # the same, all senders of the scope together
    idle_seconds: float = 60.0  # an incomplete message with no new chunk for this long is dropped

    @classmethod
    def for_message(cls, max_message: int) -> ReassemblyLimits:
        """The defaults scaled to a largest message of `max_message` bytes."""
        return cls(max_message, sender_bytes=max_message, total_bytes=4 * max_message)


@dataclass
class _Partial:
    """An incomplete message: the chunks from the first on, in one growing buffer, plus copies
    of the chunks that came early. Holds only bytes received, never the announced size."""

    sender: str
    count: int
    total: int
    chunk: int  # the size of every chunk but the last
    touched: float
    buffer: bytearray = field(default_factory=bytearray)
    ahead: dict[int, bytes] = field(default_factory=dict)  # index -> chunk beyond the buffer

    @property
    def held(self) -> int:
        return len(self.buffer) + sum(len(c) for c in self.ahead.values())

    @property
    def next_index(self) -> int:
        return len(self.buffer) // self.chunk

    def expected(self, index: int) -> int:
        start = index * self.chunk
        return min(start + self.chunk, self.total) - start

    def has(self, index: int) -> bool:
        return index < self.next_index or index in self.ahead

    def put(self, index: int, payload: memoryview) -> None:
        if index != self.next_index:
            self.ahead[index] = bytes(payload)
            return
        self.buffer += payload
        while (following := self.ahead.pop(self.next_index, None)) is not None:
            self.buffer += following

    @property
    def complete(self) -> bool:
        return len(self.buffer) == self.total


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
    what the broker did not confirm before an outage, so a frame may come twice).

    Memory follows the bytes received, not the headers: chunks in order are appended to one
    buffer, early ones are copied aside until their turn, and `limits` bound what incomplete
    messages hold (per sender: messages and bytes; per scope: bytes, the longest idle messages
    making room first) and how long one may wait for its next chunk. A chunk over a limit drops
    its message with a FrameError naming the limit. The result is that buffer: a writable
    `bytearray`, so decoders may hand out views of it.
    """

    def __init__(self, limits: ReassemblyLimits | None = None, remember: int = 4096) -> None:
        self.limits = limits or ReassemblyLimits()
        self.remember = remember
        self._partials: dict[tuple[str, int], _Partial] = {}
        self._rebuilt: dict[tuple[str, int], None] = {}  # insertion-ordered, oldest first
        self._held: dict[str, int] = {}  # sender -> bytes of its incomplete messages
        self._messages: dict[str, int] = {}  # sender -> its incomplete messages
        self._total = 0  # bytes of all incomplete messages
        self._next_sweep = 0.0

    @property
    def pending(self) -> int:
        return len(self._partials)

    @property
    def held(self) -> int:
        """Bytes held by incomplete messages."""
        return self._total

    def add(self, header: Header, payload: memoryview) -> bytearray | None:
        """Take one chunk; return the whole payload once its last chunk arrived."""
        limits = self.limits
        if header.total > limits.max_message:
            raise FrameError(f"message of {header.total} bytes exceeds {limits.max_message}")
        key = (header.sender, header.message_id)
        if key in self._rebuilt:
            return None
        if not 0 <= header.index < header.count:
            raise FrameError(f"chunk index {header.index} of {header.count}")
        if header.count == 1:
            if len(payload) != header.total:
                raise FrameError(f"payload of {len(payload)} bytes, header says {header.total}")
            self._note_rebuilt(key)
            return bytearray(payload)
        now = time.monotonic()
        self._expire(now)
        partial = self._partials.get(key) or self._open(key, header, len(payload), now)
        if partial.count != header.count or partial.total != header.total:
            self._drop(key)
            raise FrameError("chunk disagrees with earlier chunks of its message")
        if partial.has(header.index):
            return None
        if len(payload) != partial.expected(header.index):
            self._drop(key)
            raise FrameError(
                f"chunk {header.index} of {len(payload)} bytes, "
                f"expected {partial.expected(header.index)}"
            )
        self._admit(key, header.sender, len(payload))
        partial.put(header.index, payload)
        partial.touched = now
        if not partial.complete:
            return None
        self._drop(key)
        self._note_rebuilt(key)
        return partial.buffer

    def claim(self, sender: str, message_id: int) -> bool:
        """Note a message that arrived whole by other means; False if it was seen already."""
        key = (sender, message_id)
        if key in self._rebuilt:
            return False
        self._note_rebuilt(key)
        return True

    def _open(self, key: tuple[str, int], header: Header, length: int, now: float) -> _Partial:
        chunk = _chunk_size(header, length)
        if chunk < 1 or header.count > header.total:
            raise FrameError(f"{header.count} chunks for {header.total} bytes")
        if (header.count - 1) * chunk >= header.total:
            raise FrameError(f"chunks exceed the announced {header.total} bytes")
        if header.count * chunk < header.total:
            raise FrameError(f"{header.count} chunks of {chunk} bytes for {header.total}")
        if self._messages.get(header.sender, 0) >= self.limits.sender_messages:
            raise FrameError(
                f"sender {header.sender} has {self.limits.sender_messages} incomplete messages "
                "already (limit sender_messages)"
            )
        partial = _Partial(header.sender, header.count, header.total, chunk, now)
        self._partials[key] = partial
        self._messages[header.sender] = self._messages.get(header.sender, 0) + 1
        return partial

    def _admit(self, key: tuple[str, int], sender: str, size: int) -> None:
        """Count `size` more bytes held for `sender`. Over `sender_bytes` the message is dropped;
        over `total_bytes` the messages idle the longest (other than this one) are dropped
        first, so senders that stopped sending cannot crowd out one that goes on."""
        limits, mine = self.limits, self._held.get(sender, 0) + size
        if mine > limits.sender_bytes:
            self._drop(key)
            raise FrameError(
                f"incomplete message dropped: sender {sender} would hold {mine} bytes "
                f"(sender_bytes {limits.sender_bytes})"
            )
        while self._total + size > limits.total_bytes:
            oldest = next((k for k in self._partials if k != key), None)
            if oldest is None:
                self._drop(key)
                raise FrameError(
                    f"incomplete message dropped: the scope would hold {self._total + size} "
                    f"bytes (total_bytes {limits.total_bytes})"
                )
            log.warning("idle incomplete message evicted", sender=oldest[0], limit="total_bytes")
            self._drop(oldest)
        self._held[sender] = self._held.get(sender, 0) + size
        self._total += size
        self._partials[key] = self._partials.pop(key)  # most recently fed last

    def _drop(self, key: tuple[str, int]) -> None:
        partial = self._partials.pop(key, None)
        if partial is None:
            return
        sender = partial.sender
        self._total -= partial.held
        self._held[sender] = self._held.get(sender, 0) - partial.held
        self._messages[sender] = self._messages.get(sender, 0) - 1
        if self._messages[sender] <= 0:
            self._held.pop(sender, None)
            self._messages.pop(sender, None)

    def _note_rebuilt(self, key: tuple[str, int]) -> None:
        self._rebuilt[key] = None
        if len(self._rebuilt) > self.remember:
            del self._rebuilt[next(iter(self._rebuilt))]

    def forget(self, sender: str) -> None:
        """Drop the partial messages of a sender that left or died."""
        for key in [k for k in self._partials if k[0] == sender]:
            self._drop(key)

    def _expire(self, now: float) -> None:
        """Drop the messages idle for longer than the limit (a sweep at most every second)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(1.0, self.limits.idle_seconds)
        idle = self.limits.idle_seconds
        for key in [k for k, p in self._partials.items() if now - p.touched > idle]:
            self._drop(key)
