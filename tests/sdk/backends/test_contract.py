"""The Backend contract (flame_sdk/backends/base.py), checked against every adapter."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from flame_sdk.backends.base import Scope
from flame_sdk.backends.frames import Header, Kind
from tests.sdk.backends.conftest import Cluster, End
from tests.support.wait import eventually

SMALL_CHUNKS = {"chunk_size": 1000}


async def _flush(sender: End, s_scope: Scope, receiver: End, r_scope: Scope) -> None:
    """Send a marker and wait for it: everything sent earlier on that path has arrived."""
    marker = f"flush-{len(receiver.messages)}".encode()
    await sender.backend.send(s_scope, receiver.end_id, marker)
    await eventually(lambda: marker in receiver.received(r_scope), what="flush marker")


async def test_join_discovers_both_ways_and_reports_only_the_other_role(cluster: Cluster) -> None:
    agg, t1, t2 = cluster.end("agg"), cluster.end("t1"), cluster.end("t2")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    s2 = await t2.join("trainer", "aggregator")

    await eventually(lambda: agg.peers(a) == ["t1", "t2"], what="aggregator sees both trainers")
    await eventually(lambda: t1.peers(s1) == ["agg"] and t2.peers(s2) == ["agg"], what="trainers")
    await _flush(t1, s1, agg, a)
    await _flush(t2, s2, agg, a)
    await _flush(agg, a, t1, s1)
    await _flush(agg, a, t2, s2)
    assert sorted(agg.joins(a)) == ["t1", "t2"]  # exactly once each
    assert t1.joins(s1) == ["agg"] and t2.joins(s2) == ["agg"]


async def test_groups_are_isolated(cluster: Cluster) -> None:
    agg_a, agg_b, t_a, t_b = (cluster.end(n) for n in ("agg-a", "agg-b", "t-a", "t-b"))
    sa = await agg_a.join("aggregator", "trainer", group="a")
    sb = await agg_b.join("aggregator", "trainer", group="b")
    ta = await t_a.join("trainer", "aggregator", group="a")
    tb = await t_b.join("trainer", "aggregator", group="b")
    await eventually(
        lambda: agg_a.peers(sa) == ["t-a"] and agg_b.peers(sb) == ["t-b"], what="joins"
    )

    await agg_a.backend.broadcast(sa, b"for group a")
    await agg_b.backend.broadcast(sb, b"for group b")
    await eventually(lambda: t_a.received(ta) == [b"for group a"], what="group a broadcast")
    await eventually(lambda: t_b.received(tb) == [b"for group b"], what="group b broadcast")
    await _flush(agg_a, sa, t_a, ta)
    await _flush(agg_b, sb, t_b, tb)
    assert t_a.peers(ta) == ["agg-a"] and t_b.peers(tb) == ["agg-b"]
    assert b"for group b" not in t_a.received() and b"for group a" not in t_b.received()


async def test_self_loop_channel_reports_every_other_end_but_never_itself(
    cluster: Cluster,
) -> None:
    ends = [cluster.end(f"p{i}") for i in range(3)]
    scopes = [await e.join("peer", "peer", channel="ring") for e in ends]
    for end, scope in zip(ends, scopes, strict=True):
        others = sorted(e.end_id for e in ends if e is not end)
        await eventually(lambda end=end, scope=scope, o=others: end.peers(scope) == o, what="ring")

    await ends[0].backend.broadcast(scopes[0], b"hello ring")
    await eventually(
        lambda: all(
            e.received(s) == [b"hello ring"] for e, s in zip(ends[1:], scopes[1:], strict=True)
        ),
        what="ring broadcast",
    )
    await _flush(ends[1], scopes[1], ends[0], scopes[0])
    assert b"hello ring" not in ends[0].received()


async def test_unicast_preserves_order_per_sender_and_receiver(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1", **SMALL_CHUNKS)
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"], what="join")

    rng = np.random.default_rng(7)
    sent = [rng.bytes(int(n)) for n in rng.integers(0, 5000, size=40)]  # 0..5 chunks each
    for payload in sent:
        await t1.backend.send(s1, "agg", payload)
    await eventually(lambda: len(agg.received(a)) == len(sent), what="all messages")
    assert agg.received(a, sender="t1") == sent
    assert all(scope == a for scope, _, _ in agg.messages)


async def test_broadcast_reaches_every_end_of_the_other_role(cluster: Cluster) -> None:
    agg, t1, t2 = cluster.end("agg", **SMALL_CHUNKS), cluster.end("t1"), cluster.end("t2")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    s2 = await t2.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1", "t2"], what="joins")

    payload = bytes(range(256)) * 20
    await agg.backend.broadcast(a, payload)
    await eventually(lambda: t1.received(s1) == [payload], what="t1 got the broadcast")
    await eventually(lambda: t2.received(s2) == [payload], what="t2 got the broadcast")
    assert {p for _, p, _ in t1.messages + t2.messages} == {"agg"}
    await _flush(t1, s1, agg, a)
    assert payload not in agg.received()


async def test_large_payload_round_trip_is_intact(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: t1.peers(s1) == ["agg"], what="join")

    model = np.random.default_rng(1).standard_normal(6_000_000).astype(np.float32).tobytes()
    await t1.backend.send(s1, "agg", model)
    await t1.backend.send(s1, "agg", b"after the model")
    await eventually(lambda: len(agg.received(a)) == 2, what="model and trailer", timeout=60)
    got, trailer = agg.received(a)
    assert len(got) == len(model) and got == model
    assert trailer == b"after the model"

    await agg.backend.send(a, "t1", got)
    await eventually(lambda: t1.received(s1) == [model], what="model echoed back", timeout=60)


async def test_same_peer_on_two_channels_keeps_messages_apart(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1", **SMALL_CHUNKS)
    a1 = await agg.join("aggregator", "trainer", channel="c1")
    a2 = await agg.join("aggregator", "trainer", channel="c2")
    s1 = await t1.join("trainer", "aggregator", channel="c1")
    s2 = await t1.join("trainer", "aggregator", channel="c2")
    await eventually(lambda: agg.peers(a1) == ["t1"] and agg.peers(a2) == ["t1"], what="joins")

    one, two = b"1" * 25_000, b"2" * 25_000
    await asyncio.gather(t1.backend.send(s1, "agg", one), t1.backend.send(s2, "agg", two))
    await eventually(lambda: len(agg.messages) == 2, what="both messages")
    assert agg.received(a1) == [one] and agg.received(a2) == [two]


async def test_leave_reports_on_leave_and_stops_delivery(cluster: Cluster) -> None:
    agg, t1, t2 = cluster.end("agg"), cluster.end("t1"), cluster.end("t2")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    s2 = await t2.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1", "t2"], what="joins")

    await t1.backend.leave(s1)
    await eventually(lambda: agg.leaves(a) == ["t1"], what="on_leave for t1")
    await agg.backend.broadcast(a, b"after leave")
    await eventually(lambda: t2.received(s2) == [b"after leave"], what="t2 still served")
    assert t1.received(s1) == []

    await t1.backend.join(s1)  # a returning end is discovered again
    await eventually(lambda: agg.peers(a) == ["t1", "t2"], what="rejoin")


async def test_killed_end_is_reported_through_liveness(cluster: Cluster) -> None:
    agg, t1, t2 = cluster.end("agg"), cluster.end("t1", liveness_timeout=0.3), cluster.end("t2")
    a = await agg.join("aggregator", "trainer")
    await t1.join("trainer", "aggregator")
    s2 = await t2.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1", "t2"], what="joins")

    await t1.backend.kill()  # type: ignore[attr-defined]
    await eventually(lambda: agg.leaves(a) == ["t1"], what="t1 declared dead")
    assert agg.peers(a) == ["t2"]
    await _flush(t2, s2, agg, a)
    assert t2.leaves(s2) == []


async def test_handler_failure_does_not_stop_delivery(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"], what="join")
    agg.fail_next = 1
    await t1.backend.send(s1, "agg", b"first")
    await t1.backend.send(s1, "agg", b"second")
    await eventually(lambda: agg.received(a) == [b"second"], what="second message")


async def test_send_on_a_scope_not_joined_is_refused(cluster: Cluster) -> None:
    t1 = cluster.end("t1")
    await t1.backend.connect()
    with pytest.raises(RuntimeError, match="not joined"):
        await t1.backend.send(t1.scope("trainer", "aggregator"), "agg", b"x")


async def test_scope_of_another_end_is_refused(cluster: Cluster) -> None:
    t1 = cluster.end("t1")
    stranger = Scope(cluster.job_id, "param", "default", "trainer", "aggregator", "t9")
    with pytest.raises(ValueError, match="does not belong"):
        await t1.backend.join(stranger)


async def test_malformed_and_foreign_frames_are_dropped(cluster: Cluster) -> None:
    if cluster.sort == "local":
        pytest.skip("the local backend hands over objects, it has no frames to corrupt")
    agg, t1 = cluster.end("agg", max_message_bytes=10_000), cluster.end("t1")
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"], what="join")

    body = cluster.payload(b"bogus")

    def frame(**changes: object) -> bytes:
        fields: dict[str, object] = {
            "kind": Kind.DATA, "job_id": cluster.job_id, "channel": "param", "group": "default",
            "role": "trainer", "sender": "t1", "message_id": 1, "total": len(body),
        }  # fmt: skip
        fields.update(changes)
        return Header(**fields).encode() + body  # type: ignore[arg-type]

    bad = [
        b"",
        b"not a frame at all",
        b"XXXX" + frame()[4:],  # bad magic
        frame()[:30],  # truncated header
        frame(job_id="other-job"),  # foreign job
        frame(channel="unknown"),  # unknown channel
        frame(group="elsewhere"),  # another group
        frame(role="aggregator", sender="ghost"),  # wrong role
        frame(total=50_000, count=10, message_id=2),  # oversized
        frame(message_id=3, count=3, total=1),  # more chunks than bytes
    ]
    for raw in [*bad, frame()]:  # the last one is well-formed: once it is in, all junk was seen
        await cluster.inject(a, raw)
    await eventually(lambda: agg.received(a) == [b"bogus"], what="the well-formed injected frame")
    await t1.backend.send(s1, "agg", b"still working")
    await eventually(lambda: agg.received(a) == [b"bogus", b"still working"], what="later delivery")
    assert agg.peers(a) == ["t1"]
