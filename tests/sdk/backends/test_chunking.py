"""Chunk splitting and reassembly keyed by (sender, message id)."""

from __future__ import annotations

import tracemalloc

import pytest

from flame_sdk.backends import chunking
from flame_sdk.backends.chunking import Reassembler, ReassemblyLimits, split, split_parts
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
        Reassembler(ReassemblyLimits(max_message=2000)).add(header, part)


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
    r = Reassembler(ReassemblyLimits(idle_seconds=0.0))
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


# --- forged headers: memory follows the bytes received, within the limits ---------------------


def _forged(sender: str, mid: int, index: int, count: int, total: int) -> Header:
    return Header(Kind.DATA, "j", "c", "g", "r", sender, mid, index, count, total)


def test_forged_totals_cost_only_the_bytes_sent() -> None:
    """Three small frames announcing 1 GiB each once made the receiver allocate 3 GiB."""
    r = Reassembler()
    tracemalloc.start()
    try:
        for mid in range(3):  # the last chunk of a 2-chunk message, and a first chunk
            r.add(_forged("t1", mid, 1, 2, 1 << 30), memoryview(b"x" * 100))
        r.add(_forged("t2", 9, 0, 1 << 20, 1 << 30), memoryview(b"y" * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.pending == 4 and r.held == 3 * 100 + 1024
    assert peak < 1 << 20


def test_lies_about_offsets_and_counts_are_refused() -> None:
    r = Reassembler()
    r.add(_forged("t1", 1, 0, 3, 3000), memoryview(b"x" * 1000))
    with pytest.raises(FrameError, match="chunk index 7 of 3"):
        r.add(_forged("t1", 1, 7, 3, 3000), memoryview(b"x" * 1000))  # beyond the last chunk
    with pytest.raises(FrameError, match="chunk 2 of 999 bytes, expected 1000"):
        r.add(_forged("t1", 1, 2, 3, 3000), memoryview(b"x" * 999))  # its offset lies
    assert r.pending == 0 and r.held == 0  # the message is dropped with its bytes
    with pytest.raises(FrameError, match="chunks for 10 bytes"):
        r.add(_forged("t1", 2, 0, 1 << 31, 10), memoryview(b"x"))
    r.add(_forged("t1", 3, 0, 3, 3000), memoryview(b"x" * 1000))
    with pytest.raises(FrameError, match="disagrees"):
        r.add(_forged("t1", 3, 1, 4, 3000), memoryview(b"x" * 1000))
    assert r.pending == 0 and r.held == 0


def test_per_sender_and_per_scope_limits() -> None:
    limits = ReassemblyLimits(
        max_message=10_000, sender_messages=2, sender_bytes=3000, total_bytes=5000
    )
    r = Reassembler(limits)
    for mid in (1, 2):
        r.add(_forged("t1", mid, 0, 10, 10_000), memoryview(b"x" * 1000))
    with pytest.raises(FrameError, match="sender t1 has 2 incomplete messages"):
        r.add(_forged("t1", 3, 0, 10, 10_000), memoryview(b"x" * 1000))
    r.add(_forged("t1", 1, 1, 10, 10_000), memoryview(b"x" * 1000))
    with pytest.raises(FrameError, match="sender t1 would hold 4000 bytes"):
        r.add(_forged("t1", 2, 1, 10, 10_000), memoryview(b"x" * 1000))
    assert r.pending == 1 and r.held == 2000  # that message was dropped, with its bytes
    # many senders together stay within total_bytes: the longest idle messages make room
    for sender in ("t2", "t3", "t4", "t5"):
        r.add(_forged(sender, 1, 0, 10, 10_000), memoryview(b"x" * 1000))
    assert r.held == 4000 and r.pending == 4  # t1's message, idle the longest, was evicted
    data = bytes(range(250)) * 8  # honest messages still go through, in any order
    out = [r.add(h, p) for h, p in _chunks(data, 1000, "t6")[::-1]]
    assert out[-1] == data and r.held == 3000 and r.pending == 3  # t2's made room
    alone = Reassembler(ReassemblyLimits(sender_bytes=10_000, total_bytes=5000))
    with pytest.raises(FrameError, match="the scope would hold 6000 bytes"):
        alone.add(_forged("t7", 1, 0, 2, 7000), memoryview(b"x" * 6000))


def test_incomplete_messages_expire_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(chunking.time, "monotonic", lambda: clock[0])
    r = Reassembler(ReassemblyLimits(idle_seconds=5.0))
    (h0, p0), (h1, p1), (h2, p2) = _chunks(b"z" * 3000, 1000, "slow")
    r.add(h0, p0)
    r.add(_forged("liar", 1, 0, 10, 10_000), memoryview(b"x" * 1000))
    clock[0] += 4.0
    r.add(h1, p1)  # the slow sender goes on; the liar never sends again
    clock[0] += 4.0
    assert r.add(h2, p2) == b"z" * 3000
    assert r.pending == 0 and r.held == 0
