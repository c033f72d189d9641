"""Broker backends across a broker outage (a TCP proxy the test cuts): they reconnect and lose
nothing when it is short, and fail clearly, without hanging, when it outlasts their bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

from flame_sdk.backends.base import BrokerOutageError
from tests.sdk.backends.conftest import Cluster
from tests.sdk.backends.proxy import TcpProxy
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

OUTAGE = 1.5  # longer than the suite's liveness timeout (1 s): nobody may be judged dead meanwhile


@pytest.fixture(params=["rabbitmq", "mqtt"])
async def proxied(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Cluster, TcpProxy]]:
    """A cluster of one broker sort whose every connection goes through a cuttable proxy."""
    sort: str = request.param
    if sort == "rabbitmq":
        url = urlsplit(request.getfixturevalue("rabbit_url"))
        proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5672).start()
        netloc = f"{url.username}:{url.password}@127.0.0.1:{proxy.port}"
        broker = urlunsplit(url._replace(netloc=netloc))
        direct = request.getfixturevalue("rabbit_url")
    else:
        host, port = request.getfixturevalue("mqtt_broker")
        proxy = await TcpProxy(host, port).start()
        broker = f"127.0.0.1:{proxy.port}"
        direct = f"{host}:{port}"
    cluster = Cluster(sort, broker)
    cluster.direct = direct  # type: ignore[attr-defined]
    try:
        yield cluster, proxy
    finally:
        proxy.restore()
        await cluster.close()
        await proxy.close()


async def test_short_outage_loses_nothing_and_nobody_leaves(
    proxied: tuple[Cluster, TcpProxy],
) -> None:
    cluster, proxy = proxied
    agg, t1 = cluster.end("agg"), cluster.end("t1", chunk_size=64 * 1024, send_window=2)
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"] and t1.peers(s1) == ["agg"], what="discovery")
    big = np.random.default_rng(0).bytes(3 * 1024 * 1024)  # 48 chunks, two in flight

    upload = asyncio.create_task(t1.backend.send(s1, "agg", big))  # cut in the middle of it
    await asyncio.sleep(0.01)
    proxy.cut()
    during = asyncio.create_task(t1.backend.send(s1, "agg", b"sent during the outage"))
    await asyncio.sleep(OUTAGE)
    assert not during.done()  # waits for the broker, does not fail
    proxy.restore()
    await asyncio.wait_for(asyncio.gather(upload, during), 30)
    await agg.backend.broadcast(a, b"after the outage")

    await eventually(lambda: len(agg.received(a)) == 2, what="both messages")
    await eventually(lambda: t1.received(s1) == [b"after the outage"], what="broadcast after")
    assert agg.received(a) == [big, b"sent during the outage"]  # once each, in order
    assert agg.leaves(a) == [] and t1.leaves(s1) == []
    assert agg.backend.failure is None and t1.backend.failure is None


async def test_frames_lost_on_their_way_to_a_receiver_that_drops_come_again(
    proxied: tuple[Cluster, TcpProxy],
) -> None:
    """The broker had handed frames to the aggregator's connection (it took them for delivered)
    when that connection died with them: after the reconnection they arrive all the same."""
    cluster, proxy = proxied
    patient = {"heartbeat_interval": 0.5, "liveness_timeout": 5.0}  # t1 hears agg's absence
    agg = cluster.end("agg", **patient)  # through the proxy
    direct: str = cluster.direct  # type: ignore[attr-defined]
    t1 = cluster.end("t1", broker=direct, chunk_size=16 * 1024, **patient)
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: agg.peers(a) == ["t1"] and t1.peers(s1) == ["agg"], what="discovery")
    messages = [b"small", np.random.default_rng(1).bytes(100 * 1024)]  # one frame, then seven

    proxy.swallow()
    for message in messages:
        await asyncio.wait_for(t1.backend.send(s1, "agg", message), 10)  # the broker has them
    await asyncio.sleep(0.3)  # and has pushed them into the link, where they vanish
    proxy.cut()
    await asyncio.sleep(0.3)
    proxy.restore()

    await eventually(lambda: agg.received(a) == messages, what="the frames pushed before the cut")
    assert agg.leaves(a) == [] and t1.leaves(s1) == []


async def test_peer_known_across_the_outage_gets_messages_sent_before_it_resubscribed(
    proxied: tuple[Cluster, TcpProxy],
) -> None:
    cluster, proxy = proxied
    agg, trainers = cluster.end("agg"), [cluster.end(f"t{i}") for i in range(3)]
    a = await agg.join("aggregator", "trainer")
    scopes = [await t.join("trainer", "aggregator") for t in trainers]
    await eventually(lambda: agg.peers(a) == ["t0", "t1", "t2"], what="discovery")

    proxy.cut()
    sends = [
        asyncio.create_task(agg.backend.send(a, t.end_id, f"model for {t.end_id}".encode()))
        for t in trainers
    ]
    await asyncio.sleep(OUTAGE)
    proxy.restore()
    await asyncio.wait_for(asyncio.gather(*sends), 30)
    for t, s in zip(trainers, scopes, strict=True):
        model = f"model for {t.end_id}".encode()
        await eventually(lambda t=t, s=s, m=model: t.received(s) == [m], what=f"{t.end_id}'s model")
    assert agg.leaves(a) == []


async def test_outage_longer_than_the_bound_fails_clearly(
    proxied: tuple[Cluster, TcpProxy],
) -> None:
    cluster, proxy = proxied
    agg, t1 = cluster.end("agg"), cluster.end("t1", outage_timeout=1.0)
    a = await agg.join("aggregator", "trainer")
    s1 = await t1.join("trainer", "aggregator")
    await eventually(lambda: t1.peers(s1) == ["agg"], what="discovery")

    proxy.cut()
    with pytest.raises(BrokerOutageError, match=r"broker unreachable .* t1 gives up"):
        await asyncio.wait_for(t1.backend.send(s1, "agg", b"never"), 30)
    assert isinstance(t1.backend.failure, BrokerOutageError)
    assert t1.leaves(s1) == ["agg"]  # waiting receivers are released
    with pytest.raises(BrokerOutageError):
        await t1.backend.broadcast(s1, b"still never")
    assert a is not None
