"""Channels over the in-process backend: membership, liveness, ordering, isolation, bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from flame_sdk.backends.local import LocalBackend
from flame_sdk.channels import RECV, SEND, Channel, ChannelManager
from flame_sdk.config import Config, ConfigError
from flame_sdk.wire import Key
from tests.sdk.helpers import task_config


async def _manager(role: str, task_id: str, job_id: str, **extra: object) -> ChannelManager:
    cm = ChannelManager(Config.load(task_config(role, task_id, job_id, **extra)))
    await cm.join_all()
    return cm


@pytest.fixture
async def job() -> AsyncIterator[tuple[ChannelManager, ChannelManager, ChannelManager]]:
    job_id = uuid.uuid4().hex
    agg = await _manager("aggregator", "a", job_id)
    t1 = await _manager("trainer", "t1", job_id)
    t2 = await _manager("trainer", "t2", job_id)
    yield agg, t1, t2
    for cm in (agg, t1, t2):
        await cm.close()


async def test_join_func_tags_and_selection(job: tuple[ChannelManager, ...]) -> None:
    agg, t1, _ = job
    channel = agg.get_by_tag("distribute")
    assert channel is agg.get_by_tag("aggregate")
    assert await channel.await_join(2, timeout=5)
    assert sorted(await channel.ends(SEND)) == ["t1", "t2"]
    assert await t1.get_by_tag("fetch").one_end(RECV) == "a"
    with pytest.raises(ConfigError, match="no channel with func tag 'fetch'"):
        agg.get_by_tag("fetch")


async def test_send_recv_and_fifo_order_keeps_extra_messages(
    job: tuple[ChannelManager, ...],
) -> None:
    agg, t1, t2 = job
    channel = agg.get_by_tag("aggregate")
    await channel.await_join(2, timeout=5)
    await t1.get_by_tag("upload").send("a", {Key.ROUND: 1})
    await t2.get_by_tag("upload").send("a", {Key.ROUND: 2})
    await t1.get_by_tag("upload").send("a", {Key.ROUND: 3})
    got = [(e, m[Key.ROUND]) async for e, m in channel.recv_fifo(["t1", "t2"]) if m]
    assert got == [("t1", 1), ("t2", 2)]
    assert channel.get_end_property("t1", "state") == "recvd"
    message = await channel.recv("t1", timeout=5)
    assert message == {Key.ROUND: 3}
    assert await channel.recv("t1", timeout=0.05) is None  # nothing left: timeout


async def test_recv_fifo_first_k(job: tuple[ChannelManager, ...]) -> None:
    agg, t1, t2 = job
    channel = agg.get_by_tag("aggregate")
    await channel.await_join(2, timeout=5)
    await t2.get_by_tag("upload").send("a", {Key.ROUND: 7})
    got = [e async for e, _ in channel.recv_fifo(["t1", "t2"], first_k=1)]
    assert got == ["t2"]
    await t1.get_by_tag("upload").send("a", {Key.ROUND: 8})
    got = [e async for e, _ in channel.recv_fifo(["t1", "t2"], first_k=1, timeout=5)]
    assert got == ["t1"]


async def test_broadcast_and_weights(job: tuple[ChannelManager, ...]) -> None:
    agg, t1, t2 = job
    channel = agg.get_by_tag("distribute")
    await channel.await_join(2, timeout=5)
    for cm in (t1, t2):
        await cm.get_by_tag("fetch").await_join(1, timeout=5)
    w = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    await channel.broadcast({Key.EOT: True, Key.WEIGHTS: w})
    for cm in (t1, t2):
        message = await cm.get_by_tag("fetch").recv("a", timeout=5)
        assert message is not None and message[Key.EOT] is True
        np.testing.assert_array_equal(message[Key.WEIGHTS]["w"], w["w"])


async def test_leaving_end_unblocks_receivers(job: tuple[ChannelManager, ...]) -> None:
    agg, t1, t2 = job
    channel = agg.get_by_tag("aggregate")
    await channel.await_join(2, timeout=5)
    waiter = asyncio.create_task(channel.recv("t1"))
    await t2.get_by_tag("upload").send("a", {Key.ROUND: 1})
    assert await channel.recv("t2", timeout=5) == {Key.ROUND: 1}  # a later message got through
    assert not waiter.done()  # while the receive from t1 still waits
    await t1.close()
    assert await asyncio.wait_for(waiter, 5) is None
    assert not channel.has("t1")
    fifo = [(e, m) async for e, m in channel.recv_fifo(["t1"])]
    assert fifo == [("t1", None)]


async def test_crashed_end_is_removed_after_liveness_timeout(
    job: tuple[ChannelManager, ...],
) -> None:
    agg, t1, t2 = job
    channel = agg.get_by_tag("aggregate")
    await channel.await_join(2, timeout=5)
    pending = asyncio.create_task(_collect(channel, ["t1", "t2"]))
    await t1.get_by_tag("upload").send("a", {Key.ROUND: 1})
    backend = t2.backends[0]
    assert isinstance(backend, LocalBackend)
    await backend.kill()  # dies without leaving
    got = await asyncio.wait_for(pending, 10)
    assert got == [("t1", {Key.ROUND: 1}), ("t2", None)]
    assert not channel.has("t2")


async def _collect(channel: Channel, ends: list[str]) -> list[tuple[str, object]]:
    return [(e, m) async for e, m in channel.recv_fifo(ends)]


async def test_corrupt_and_foreign_messages_are_dropped(job: tuple[ChannelManager, ...]) -> None:
    agg, t1, _ = job
    channel = agg.get_by_tag("aggregate")
    await channel.await_join(2, timeout=5)
    upload = t1.get_by_tag("upload")
    for junk in (b"", b"garbage", b"\x80\x04K\x01."):  # the last one is a pickle
        await upload.backend.send(upload.scope, "a", junk)
    await upload.send("a", {Key.ROUND: 5})
    assert await channel.recv("t1", timeout=5) == {Key.ROUND: 5}
    assert channel.stats["recv.bytes"] > 0


async def test_oversized_messages_are_dropped() -> None:
    job_id = uuid.uuid4().hex
    agg = await _manager("aggregator", "a", job_id, hyperparameters={"maxMessageBytes": 256})
    t1 = await _manager("trainer", "t1", job_id)
    try:
        channel = agg.get_by_tag("aggregate")
        await channel.await_join(1, timeout=5)
        await t1.get_by_tag("upload").send("a", {Key.WEIGHTS: {"w": np.zeros(1000)}})
        await t1.get_by_tag("upload").send("a", {Key.ROUND: 1})
        assert await channel.recv("t1", timeout=5) == {Key.ROUND: 1}
    finally:
        await agg.close()
        await t1.close()


async def test_groups_are_isolated() -> None:
    job_id = uuid.uuid4().hex

    def grouped(role: str, task_id: str, group: str) -> dict[str, object]:
        raw = task_config(role, task_id, job_id, groupAssociation={"param-channel": group})
        raw["channels"] = [
            {**raw["channels"][0], "groupBy": {"type": "tag", "value": ["eu", "na"]}}
        ]
        return raw

    managers = [
        ChannelManager(Config.load(grouped(r, t, g)))
        for r, t, g in [
            ("aggregator", "a-eu", "eu"),
            ("aggregator", "a-na", "na"),
            ("trainer", "t-eu", "eu"),
            ("trainer", "t-na", "na"),
        ]
    ]
    for cm in managers:
        await cm.join_all()
    try:
        eu, na = managers[0].get("param-channel"), managers[1].get("param-channel")
        await eu.await_join(1, timeout=5)
        await na.await_join(1, timeout=5)
        # a message sent after every join got through: the joins before it were all handled
        await managers[2].get("param-channel").send("a-eu", {Key.ROUND: 1})
        await managers[3].get("param-channel").send("a-na", {Key.ROUND: 2})
        assert await eu.recv("t-eu", timeout=5) == {Key.ROUND: 1}
        assert await na.recv("t-na", timeout=5) == {Key.ROUND: 2}
        assert eu.all_ends() == ["t-eu"] and na.all_ends() == ["t-na"]
    finally:
        for cm in managers:
            await cm.close()


async def test_await_join_times_out_alone() -> None:
    cm = await _manager("aggregator", "solo", uuid.uuid4().hex)
    try:
        assert await cm.get("param-channel").await_join(1, timeout=0.05) is False
        assert cm.get("param-channel").empty()
    finally:
        await cm.close()
