"""Stored task output as chunks `(offset, bytes)`: the read both `Resources` adapters share."""

from __future__ import annotations

from collections.abc import Iterable

from flame_apiserver.ports import TaskLogSlice

Chunk = tuple[int, bytes]


def chunk_end(chunk: Chunk) -> int:
    return chunk[0] + len(chunk[1])


def contiguous(chunks: Iterable[Chunk], offset: int, limit: int, end: int) -> TaskLogSlice:
    """At most `limit` bytes from `offset` (or from the first chunk's start when past it) of
    `chunks` — sorted by offset, each ending past `offset` —, stopping at the first gap."""
    parts: list[bytes] = []
    start = at = -1
    size = 0
    for chunk_offset, data in chunks:
        if start < 0:
            start = at = max(offset, chunk_offset)
        if chunk_offset > at or size >= limit:
            break
        piece = data[at - chunk_offset :][: limit - size]
        parts.append(piece)
        at += len(piece)
        size += len(piece)
    if start < 0:
        return TaskLogSlice(start=offset, data=b"", end=end)
    return TaskLogSlice(start=start, data=b"".join(parts), end=end)
