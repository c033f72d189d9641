"""Forged chunk headers sent through the real brokers: the receiver holds only the bytes it was
sent, within its limits, and honest messages still arrive."""

from __future__ import annotations

import pytest

from flame_sdk.backends.broker import BrokerBackend
from flame_sdk.backends.frames import Header, Kind
from flame_sdk.backends.p2p import P2PBackend
from tests.sdk.backends.conftest import Cluster
from tests.support.wait import eventually

MAX = 100_000  # the receiver's largest message: 100 kB per sender, 400 kB per scope


def _held(backend: object) -> int:
    if isinstance(backend, P2PBackend):
        backend = backend.inner  # its broker side reassembles what the broker carries
    assert isinstance(backend, BrokerBackend)
    return sum(state.reassembler.held for state in backend._states.values())


async def test_forged_chunk_headers_cost_only_what_was_sent(cluster: Cluster) -> None:
    if cluster.sort == "local":
        pytest.skip("the local backend hands over objects, it has no frames to forge")
    agg, t1 = cluster.end("agg", max_message_bytes=MAX), cluster.end("t1", chunk_size=10_000)
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"], what="join")

    def frame(sender: str, message_id: int, index: int, count: int, total: int) -> Header:
        return Header(
            Kind.DATA, cluster.job_id, "param", "default", "trainer", sender,
            message_id, index, count, total,
        )  # fmt: skip

    # three tiny frames announcing the largest message each, then 30 forged senders with a
    # real first chunk of 20 kB (600 kB in all: more than the scope keeps)
    forged = [frame("t1", mid, 1, 2, MAX).encode() + b"x" * 10 for mid in (1, 2, 3)]
    forged += [frame(f"ghost{i}", 1, 0, 5, MAX).encode() + b"y" * 20_000 for i in range(30)]
    marker = cluster.payload(b"marker")
    for raw in [*forged, frame("t1", 4, 0, 1, len(marker)).encode() + marker]:
        await cluster.inject(a, raw)
    await eventually(lambda: agg.received(a) == [b"marker"], what="the frames after the forged")
    assert 30 <= _held(agg.backend) <= 4 * MAX  # never the 3 x 100 kB announced, nor 600 kB

    honest = bytes(range(256)) * 300  # 76.8 kB in 8 chunks: older forgeries make room
    await t1.backend.send(s1, "agg", honest)
    await eventually(lambda: agg.received(a) == [b"marker", honest], what="an honest message")
    assert _held(agg.backend) <= 4 * MAX
