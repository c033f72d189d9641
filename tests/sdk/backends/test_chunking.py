"""Chunk splitting and reassembly keyed by (sender, message id)."""

from __future__ import annotations

import pytest

from flame_sdk.backends.chunking import Reassembler, split, split_parts
from flame_sdk.backends.frames import FrameError, Header, Kind


def _chunks(
    data: bytes, size: int, sender: str = "t1", mid: int = 1
) -> list[tuple[Header, memoryview]]:
    parts = split(data, size)
    return [
        (Header(Kind.DATA, "j", "c", "g", "r", sender, mid, i, len(parts), len(data)), part)
        for i, part in enumerate(parts)
    ]


def test_split_makes_views_of_at_most_chunk_size() -> None:
    data = bytes(range(250)) * 4
    parts = split(data, 300)
    assert [len(p) for p in parts] == [300, 300, 300, 100]
    assert b"".join(parts) == data and all(p.obj is data for p in parts)
    assert [len(p) for p in split(b"", 10)] == [0]
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        split(data, 0)


def test_reassembles_in_any_order_and_ignores_duplicates() -> None:
    data = bytes(range(256)) * 40
    chunks = _chunks(data, 1000)
    r = Reassembler()
    shuffled = chunks[::-1]
    results = [r.add(h, p) for h, p in [*shuffled[:3], shuffled[0], *shuffled[3:]]]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == data and r.pending == 0


def test_interleaved_senders_with_the_same_message_id_do_not_mix() -> None:
    a, b = b"a" * 5000, b"b" * 5000
    r = Reassembler()
    out = []
    for (ha, pa), (hb, pb) in zip(_chunks(a, 999, "t1"), _chunks(b, 999, "t2"), strict=True):
        out += [r.add(ha, pa), r.add(hb, pb)]
    assert [x for x in out if x is not None] == [a, b]


def test_single_chunk_with_wrong_length_is_refused() -> None:
    header = Header(Kind.DATA, "j", "c", "g", "r", "t1", 1, 0, 1, 10)
    with pytest.raises(FrameError, match="header says 10"):
        Reassembler().add(header, memoryview(b"short"))


def test_oversized_message_is_refused() -> None:
    (header, part), *_ = _chunks(b"x" * 3000, 1000)
    with pytest.raises(FrameError, match="exceeds 2000"):
        Reassembler(max_message=2000).add(header, part)


def test_inconsistent_chunks_drop_the_message() -> None:
    r = Reassembler()
    (h0, p0), (_, p1), _ = _chunks(b"x" * 3000, 1000)
    r.add(h0, p0)
    liar = Header(Kind.DATA, "j", "c", "g", "r", "t1", 1, 1, 5, 3000)
    with pytest.raises(FrameError, match="disagrees"):
        r.add(liar, p1)
    assert r.pending == 0


def test_chunks_larger_than_announced_are_refused() -> None:
    r = Reassembler()
    header = Header(Kind.DATA, "j", "c", "g", "r", "t1", 1, 0, 2, 10)
    with pytest.raises(FrameError, match="exceed the announced 10 bytes"):
        r.add(header, memoryview(b"x" * 11))


def test_forget_and_expiry_drop_partial_messages() -> None:
    r = Reassembler(ttl=0.0)
    (h0, p0), *_ = _chunks(b"x" * 3000, 1000, "t1")
    (g0, q0), *_ = _chunks(b"y" * 3000, 1000, "t2")
    r.add(h0, p0)
    r.forget("t1")
    assert r.pending == 0
    r.add(g0, q0)
    r.add(h0, p0)  # expires the partial of t2 (ttl 0)
    assert r.pending == 1


def test_split_cuts_several_buffers_as_their_concatenation() -> None:
    parts: list[bytes | bytearray | memoryview] = [
        b"ab",
        memoryview(b"cdefg"),
        b"",
        bytearray(b"hij"),
    ]
    chunks = split(parts, 4)
    assert [bytes(c) for c in chunks] == [b"abcd", b"efgh", b"ij"]
    assert [[bytes(v) for v in c] for c in split_parts(parts, 4)] == [
        [b"ab", b"cd"],
        [b"efg", b"h"],
        [b"ij"],
    ]
    assert [bytes(c) for c in split([b"", b""], 4)] == [b""]


def test_reassembled_payload_is_one_writable_buffer() -> None:
    data = bytes(range(256)) * 10
    r = Reassembler()
    out = [r.add(h, p) for h, p in _chunks(data, 700)[::-1]]
    result = out[-1]
    assert isinstance(result, bytearray) and result == data


def test_chunk_of_the_wrong_size_drops_the_message() -> None:
    r = Reassembler()
    (h0, p0), (h1, _), _ = _chunks(b"x" * 3000, 1000)
    r.add(h0, p0)
    with pytest.raises(FrameError, match="expected 1000"):
        r.add(h1, memoryview(b"x" * 999))
    assert r.pending == 0
