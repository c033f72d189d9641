"""The same-host bulk path of the broker backends (shm.py): handles on the broker, bytes aside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from flame_sdk.backends import shm
from flame_sdk.backends.broker import BrokerBackend
from flame_sdk.backends.frames import Header, Kind
from flame_sdk.backends.shm import SegmentStore
from tests.sdk.backends.conftest import Cluster, End
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

MODEL = np.random.default_rng(3).standard_normal(750_000).astype(np.float32).tobytes()  # 3 MB


@pytest.fixture(params=["rabbitmq", "mqtt"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "rabbitmq":
        broker = request.getfixturevalue("rabbit_url")
    else:
        host, port = request.getfixturevalue("mqtt_broker")
        broker = f"{host}:{port}"
    cluster = Cluster(request.param, broker, str(tmp_path / "shm"))
    yield cluster
    await cluster.close()


def _store(end: End) -> SegmentStore:
    assert isinstance(end.backend, BrokerBackend) and end.backend.shm is not None
    return end.backend.shm


def _domains(end: End) -> dict[str, str]:
    """The shared-memory domains `end` learnt of its peers on the default scope."""
    assert isinstance(end.backend, BrokerBackend)
    return end.backend._states[("param", "default")].domains


def _segments(cluster: Cluster) -> list[str]:
    return sorted(os.listdir(cluster.shm_dir))


async def _pair(cluster: Cluster, **trainer_options: float) -> tuple[End, End]:
    agg, t1 = cluster.end("agg"), cluster.end("t1", **trainer_options)
    a = await agg.join("aggregator", "trainer")
    await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"], what="join")
    return agg, t1


async def test_a_same_host_unicast_travels_through_shared_memory_in_order(
    cluster: Cluster,
) -> None:
    agg, t1 = await _pair(cluster)
    s1, a = t1.scope("trainer", "aggregator"), agg.scope("aggregator", "trainer")
    await eventually(lambda: "agg" in _domains(t1), what="the aggregator's domain")

    await t1.backend.send(s1, "agg", b"small first")
    await t1.backend.send(s1, "agg", MODEL)
    await t1.backend.send(s1, "agg", b"small after")
    await eventually(lambda: len(agg.received(a)) == 3, what="three messages", timeout=30)

    assert agg.received(a) == [b"small first", MODEL, b"small after"]
    assert _store(t1).stats["sent"] == 1 and _store(agg).stats["received"] == 1
    assert _segments(cluster) == []  # the receiver removed it on reading


async def test_concurrent_sends_to_one_end_keep_their_call_order(cluster: Cluster) -> None:
    agg, t1 = await _pair(cluster)
    await eventually(lambda: "agg" in _domains(t1), what="the aggregator's domain")
    s1, a = t1.scope("trainer", "aggregator"), agg.scope("aggregator", "trainer")
    big = MODEL * 2  # written off the event loop: the small ones must still wait their turn
    sends = [big, b"one", MODEL, b"two"]

    await asyncio.gather(*(t1.backend.send(s1, "agg", p) for p in sends))
    await eventually(lambda: len(agg.received(a)) == 4, what="four messages", timeout=30)
    assert agg.received(a) == sends


async def test_a_multicast_writes_one_copy_for_every_peer_on_the_host(cluster: Cluster) -> None:
    agg = cluster.end("agg")
    trainers = [cluster.end(f"t{i}") for i in range(3)]
    a = await agg.join("aggregator", "trainer")
    scopes = [await t.join("trainer", "aggregator") for t in trainers]
    await eventually(lambda: agg.peers(a) == ["t0", "t1", "t2"], what="joins")
    await eventually(lambda: len(_domains(agg)) == 3, what="the trainers' domains")

    await agg.backend.multicast(a, ["t0", "t1", "t2"], MODEL)
    for t, s in zip(trainers, scopes, strict=True):
        await eventually(lambda t=t, s=s: t.received(s) == [MODEL], what=f"{t.end_id} got it")
    stats = _store(agg).stats
    assert stats["written.bytes"] == len(MODEL) and stats["sent"] == 3
    assert _segments(cluster) == []


async def test_peers_of_another_domain_or_with_the_path_off_use_the_broker(
    cluster: Cluster, tmp_path: Path
) -> None:
    agg = cluster.end("agg")
    elsewhere = cluster.end("t-far", shm_dir=str(tmp_path / "other-host"))
    off = cluster.end("t-off", shared_memory=False)
    a = await agg.join("aggregator", "trainer")
    s_far = await elsewhere.join("trainer", "aggregator")
    s_off = await off.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t-far", "t-off"], what="joins")

    await agg.backend.multicast(a, ["t-far", "t-off"], MODEL)
    await eventually(lambda: elsewhere.received(s_far) == [MODEL], what="far end got it")
    await eventually(lambda: off.received(s_off) == [MODEL], what="end with the path off")
    assert _store(agg).stats["sent"] == 0 and off.backend.shm is None  # type: ignore[attr-defined]


async def test_a_failed_segment_write_falls_back_to_the_broker(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    agg, t1 = await _pair(cluster)
    await eventually(lambda: "agg" in _domains(t1), what="the aggregator's domain")

    def full(*_: object) -> list[str]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_store(t1), "write", full)
    await t1.backend.send(t1.scope("trainer", "aggregator"), "agg", MODEL)
    a = agg.scope("aggregator", "trainer")
    await eventually(lambda: agg.received(a) == [MODEL], what="the model, over the broker")


async def test_forged_handles_are_dropped_and_a_duplicate_is_delivered_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    agg, _ = await _pair(cluster)
    a = agg.scope("aggregator", "trainer")
    store = _store(agg)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the wire")
    link = "9999999999-" + "ab" * 16 + ".0"
    os.symlink(secret, os.path.join(cluster.shm_dir, link))
    wrong_size = store.write([memoryview(b"x" * 100)], 1)[0]

    def handle(name: str, size: int, message_id: int) -> bytes:
        job = cluster.job_id
        header = Header(Kind.SHM, job, "param", "default", "trainer", "t1", message_id, total=size)
        return header.encode() + name.encode()

    forged = [
        handle("../secret", 16, 1),  # outside the directory
        handle(link, 16, 2),  # a symlink
        handle(wrong_size, 99, 3),  # not the announced size
        handle("0000000001-" + "cd" * 16 + ".0", 5, 4),  # no such segment
    ]
    for raw in forged:
        await cluster.inject(a, raw)
    good = store.write([memoryview(b"genuine")], 1)[0]
    await cluster.inject(a, handle(good, 7, 5))
    await cluster.inject(a, handle(good, 7, 5))  # published again after an outage
    await cluster.inject(a, handle("9999999999-" + "ef" * 16 + ".0", 1, 5))  # same id again

    await eventually(lambda: agg.received(a) == [b"genuine"], what="the genuine message")
    await asyncio.sleep(0.3)
    assert agg.received(a) == [b"genuine"]
    assert secret.read_bytes() == b"not for the wire"


async def test_a_segment_whose_receiver_died_is_swept_after_its_expiry(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm, "SWEEP_SECONDS", 0.2)
    agg, t1 = await _pair(cluster, outage_timeout=0.5)
    await eventually(lambda: "agg" in _domains(t1), what="the aggregator's domain")
    await agg.backend.kill()  # type: ignore[attr-defined]

    await t1.backend.send(t1.scope("trainer", "aggregator"), "agg", MODEL)
    assert _store(t1).stats["sent"] == 1
    assert len(_segments(cluster)) == 1  # waiting for a reader that will never come
    await eventually(lambda: _segments(cluster) == [], what="the orphan swept", timeout=15)
    assert _store(t1).stats["swept"] == 1


WRITER = """
import os, sys, time
from flame_sdk.backends import shm

def stall(fd, views):
    os.write(fd, b"partial model bytes")
    print("holding", flush=True)
    time.sleep(120)

shm._write_all = stall
store = shm.SegmentStore.open(sys.argv[1], expiry_seconds=60, threshold=1)
store.write([memoryview(b"x" * 4096)], 3)
"""


def test_a_writer_killed_while_holding_a_segment_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = str(tmp_path / "shm")
    store = SegmentStore.open(directory, expiry_seconds=60, threshold=1)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), directory],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        held = os.listdir(directory)
        assert held == [f"w-{writer.pid}-{held[0].rsplit('-', 1)[1]}"]
        assert store.sweep() == 0  # its writer is alive: left alone
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        writer.kill()
    assert store.sweep() == 1 and os.listdir(directory) == []
