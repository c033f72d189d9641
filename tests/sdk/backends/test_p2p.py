"""The p2p backend: payloads go direct, fall back to the broker in order, strangers are refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import aio_pika
import numpy as np
import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from flame_sdk.backends import create_backend
from flame_sdk.backends.base import Scope
from flame_sdk.backends.frames import Header, Kind
from flame_sdk.backends.mqtt import MQTTBackend
from flame_sdk.backends.p2p import (
    ENVELOPE,
    ENVELOPE_MAGIC,
    HELLO_MAGIC,
    Address,
    EnvelopeKind,
    P2PBackend,
)
from flame_sdk.backends.rabbitmq import RabbitMQBackend, exchange_name
from flame_sdk.simulation.cli import main as flame_sim
from tests.sdk.backends.conftest import Cluster, End
from tests.sdk.backends.proxy import TcpProxy
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BIG = 2_000_000  # bytes: far above any control frame


@pytest.fixture
async def cluster(rabbit_url: str) -> AsyncIterator[Cluster]:
    cluster = Cluster("p2p", rabbit_url)
    yield cluster
    await cluster.close()


def p2p(end: End) -> P2PBackend:
    assert isinstance(end.backend, P2PBackend)
    return end.backend


async def linked(agg: End, *trainers: End) -> tuple[Scope, list[Scope]]:
    """Join the aggregator and trainers; wait until each side knows the other and its address."""
    a = await agg.join("aggregator", "trainer")
    scopes = [await t.join("trainer", "aggregator") for t in trainers]
    ids = sorted(t.end_id for t in trainers)
    await eventually(lambda: agg.peers(a) == ids, what="the aggregator sees the trainers")
    for trainer, s in zip(trainers, scopes, strict=True):
        await eventually(
            lambda t=trainer, s=s: (
                t.peers(s) == ["agg"]
                and p2p(t).reachable(s, "agg")
                and p2p(agg).reachable(a, t.end_id)
            ),
            what=f"{trainer.end_id} and agg know each other's listener",
        )
    return a, scopes


@contextlib.asynccontextmanager
async def broker_spy(url: str, job_id: str) -> AsyncIterator[list[int]]:
    """The sizes of the frames the broker carries on the job's exchange meanwhile."""
    sizes: list[int] = []

    async def record(message: AbstractIncomingMessage) -> None:
        sizes.append(len(message.body))

    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name(job_id))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(record, no_ack=True)
        yield sizes


def test_factory_composes_the_broker_side_from_the_url() -> None:
    over_rabbit = create_backend("p2p", "amqp://h/", "j", "e")
    over_mqtt = create_backend("p2p", "h:1883", "j", "e", keepalive=5)
    assert isinstance(over_rabbit, P2PBackend) and isinstance(over_rabbit.inner, RabbitMQBackend)
    assert isinstance(over_mqtt, P2PBackend) and isinstance(over_mqtt.inner, MQTTBackend)
    assert over_mqtt.inner.keepalive == 5  # options it does not know go to the broker side
    with pytest.raises(ValueError, match="advertise_host"):
        create_backend("p2p", "amqp://h/", "j", "e", host="0.0.0.0")
    with pytest.raises(ValueError, match="timeouts must be positive"):
        create_backend("p2p", "amqp://h/", "j", "e", connect_timeout=0)


async def test_payloads_go_direct_and_the_broker_carries_only_small_frames(
    cluster: Cluster, rabbit_url: str
) -> None:
    agg, t1, t2 = cluster.end("agg"), cluster.end("t1"), cluster.end("t2")
    a, (s1, s2) = await linked(agg, t1, t2)
    rng = np.random.default_rng(3)
    one, two, model = rng.bytes(BIG), rng.bytes(BIG), rng.bytes(BIG)
    async with broker_spy(rabbit_url, cluster.job_id) as sizes:
        await asyncio.gather(t1.backend.send(s1, "agg", one), t2.backend.send(s2, "agg", two))
        await agg.backend.broadcast(a, model)
        await eventually(lambda: t1.received(s1) == [model] and t2.received(s2) == [model])
        await asyncio.sleep(0.2)  # a few heartbeats: the spy sees the broker is in use
    assert agg.received(a, sender="t1") == [one] and agg.received(a, sender="t2") == [two]
    assert sizes and max(sizes) < 1024, sorted(sizes)[-3:]

    listener = p2p(agg).address
    assert listener is not None
    await agg.backend.close()  # closes its listener and streams
    with pytest.raises(OSError):
        await asyncio.open_connection(listener.host, listener.port)


async def test_an_oversized_message_is_refused_on_both_paths(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg", max_message_bytes=10_000), cluster.end("t1")
    a, (s1,) = await linked(agg, t1)
    with capture_logs() as logs:
        await t1.backend.send(s1, "agg", bytes(50_000))  # the stream refuses it, then the broker
        await t1.backend.send(s1, "agg", b"next")
        await eventually(lambda: agg.received(a) == [b"next"], what="the next message")
    dropped = [e for e in logs if e["event"] == "p2p stream dropped"]
    assert dropped and "exceeds 10000" in dropped[0]["reason"], logs


@pytest.mark.parametrize("listener", ["refused", "silent"])
async def test_unreachable_listener_falls_back_to_the_broker(
    cluster: Cluster, rabbit_url: str, listener: str
) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1", connect_timeout=0.3)
    await agg.backend.connect()
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts the connection, never says a word

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    port = silent.sockets[0].getsockname()[1] if listener == "silent" else closed_port
    p2p(agg).address = Address("127.0.0.1", port)
    try:
        a, (s1,) = await linked(agg, t1)
        sent = [np.random.default_rng(i).bytes(200_000) for i in range(5)]
        async with broker_spy(rabbit_url, cluster.job_id) as sizes:
            started = time.monotonic()
            for payload in sent:
                await t1.backend.send(s1, "agg", payload)
            assert time.monotonic() - started < 2.0  # one bounded attempt, then the broker
            await eventually(lambda: agg.received(a) == sent, what="the payloads, in order")
        assert sum(size > 200_000 for size in sizes) == len(sent)
    finally:
        for writer in held:
            writer.transport.abort()
        silent.close()


async def test_order_holds_while_the_path_switches(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg"), cluster.end("t1", retry_interval=0.0)
    await agg.backend.connect()
    listener = p2p(agg).address
    assert listener is not None
    proxy = await TcpProxy("127.0.0.1", listener.port).start()
    proxy.cut()  # refuses connections: the first messages take the broker
    p2p(agg).address = Address("127.0.0.1", proxy.port)
    try:
        a, (s1,) = await linked(agg, t1)
        rng = np.random.default_rng(5)
        sent: list[bytes] = []

        async def burst(size: int) -> None:
            for _ in range(6):
                sent.append(f"{len(sent)}:".encode() + rng.bytes(size))
                await t1.backend.send(s1, "agg", sent[-1])

        # the broker side of agg hands messages on only when the gate is open: what goes
        # through the broker arrives after what goes direct
        gate, inner = asyncio.Event(), p2p(agg).inner
        forward = inner.on_message
        assert forward is not None

        async def gated(scope: Scope, peer: str, data: bytes | bytearray) -> None:
            await gate.wait()
            await forward(scope, peer, data)

        inner.on_message = gated
        with capture_logs() as logs:
            await burst(BIG)  # over the broker
            proxy.restore()
            await burst(100)  # direct, acknowledged, but held behind the first burst
            assert agg.received(a) == []
            gate.set()
            await eventually(lambda: len(agg.received(a)) == 12, what="both bursts")
            gate.clear()
            proxy.cut()
            await burst(BIG)  # the stream broke: the broker again
            proxy.restore()
            await burst(100)
            assert len(agg.received(a)) == 12
            gate.set()
            await eventually(lambda: len(agg.received(a)) == len(sent), what="every message")
        assert [m[:4] for m in agg.received(a)] == [m[:4] for m in sent]
        assert agg.received(a) == sent
        events = {e["event"] for e in logs}
        assert {"p2p stream open", "p2p stream not opened; using the broker"} <= events
    finally:
        await proxy.close()


async def test_broker_side_messages_are_delivered_in_sequence(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg", reorder_timeout=0.3), cluster.end("t1")
    a, _ = await linked(agg, t1)

    ids = iter(range(1000, 2000))

    def frame(payload: bytes) -> bytes:
        """A broker frame from t1 (a message id of its own) carrying `payload`."""
        job, message_id = cluster.job_id, next(ids)
        header = Header(Kind.DATA, job, "param", "default", "trainer", "t1", message_id)
        return Header(**{**asdict(header), "total": len(payload)}).encode() + payload

    def data(seq: int, body: bytes) -> bytes:
        """Message `seq` of a stream of t1's that t1 itself never started."""
        return frame(ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.DATA, 99, seq) + body)

    for raw in (data(1, b"second"), data(0, b"first"), data(0, b"first again")):
        await cluster.inject(a, raw)
    await eventually(lambda: agg.received(a) == [b"first", b"second"], what="reordered")
    await cluster.inject(a, data(3, b"after a lost one"))  # 2 never comes: skipped in time
    await eventually(lambda: len(agg.received(a)) == 3, what="the gap skipped")
    assert agg.received(a)[-1] == b"after a lost one"
    with capture_logs() as logs:
        await cluster.inject(a, frame(ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.ADDR, 0, 0)))
        await cluster.inject(a, frame(b"short"))
        dropped = {"p2p address dropped", "p2p broker message dropped"}
        await eventually(lambda: dropped <= {e["event"] for e in logs}, what="both logged")
    assert len(agg.received(a)) == 3


async def test_forged_and_unauthenticated_connections_are_refused(cluster: Cluster) -> None:
    agg, t1 = cluster.end("agg", connect_timeout=0.5), cluster.end("t1")
    a, (s1,) = await linked(agg, t1)
    address = p2p(agg).address
    assert address is not None
    header = Header(Kind.HELLO, cluster.job_id, "param", "default", "trainer", "t1").encode()
    attempts = {
        "garbage": b"GET / HTTP/1.1\r\n\r\n" + b"x" * 64,
        "wrong token": HELLO_MAGIC + b"\0" * 32 + len(header).to_bytes(2, "big") + header,
        "silent": b"",
    }
    with capture_logs() as logs:
        for name, raw in attempts.items():
            reader, writer = await asyncio.open_connection(address.host, address.port)
            try:
                assert len(await reader.readexactly(16)) == 16  # the nonce
                if raw:
                    writer.write(raw + b"forged payload" * 1000)
                async with asyncio.timeout(2):
                    rest = await reader.read()  # the listener hangs up
                assert rest == b"", name
            finally:
                writer.transport.abort()
    refusals = [e for e in logs if e["event"] == "p2p connection refused"]
    assert len(refusals) == len(attempts), logs
    assert {"bad token", "not a p2p handshake"} <= {e["reason"] for e in refusals}
    assert agg.received(a) == [] and agg.peers(a) == ["t1"]
    await t1.backend.send(s1, "agg", b"the real one")
    await eventually(lambda: agg.received(a) == [b"the real one"], what="real delivery")


PEER = """
import asyncio, os, sys
from flame_sdk.backends import create_backend
from flame_sdk.backends.base import Scope

async def main(url, job, mode):
    backend = create_backend("p2p", url, job, "t1", heartbeat_interval=0.1, liveness_timeout=1.0)
    async def nothing(*args): pass
    backend.bind(nothing, nothing, nothing)
    scope = Scope(job, "param", "default", "trainer", "aggregator", "t1")
    await backend.join(scope)
    while backend.reachable(scope, "agg") is None:
        await asyncio.sleep(0.02)
    if mode == "sender":
        await backend.send(scope, "agg", b"small")
        await asyncio.sleep(0.5)
        await backend.send(scope, "agg", os.urandom(32 << 20))
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:]))
"""


async def start_peer(cluster: Cluster, mode: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PEER, cluster.broker, cluster.job_id, mode,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return process


async def test_sender_killed_mid_message_delivers_nothing_partial(cluster: Cluster) -> None:
    agg = cluster.end("agg")
    a = await agg.join("aggregator", "trainer")
    peer = await start_peer(cluster, "sender")
    try:
        await eventually(lambda: agg.received(a) == [b"small"], what="the first message")
        with capture_logs() as logs:
            time.sleep(1.0)  # this loop stops reading: the 32 MiB message stalls half sent
            os.kill(peer.pid, signal.SIGKILL)
            await eventually(lambda: agg.leaves(a) == ["t1"], what="the killed sender leaves")
        assert agg.received(a) == [b"small"]
        assert any(e["event"] == "p2p stream dropped" for e in logs), logs
    finally:
        with contextlib.suppress(ProcessLookupError):
            peer.kill()
        await peer.wait()


async def test_receiver_killed_mid_message_unblocks_the_sender(cluster: Cluster) -> None:
    agg = cluster.end("agg", io_timeout=5.0)
    a = await agg.join("aggregator", "trainer")
    peer = await start_peer(cluster, "receiver")
    try:
        assert peer.stdout is not None
        await asyncio.wait_for(peer.stdout.readline(), 15)
        await eventually(lambda: p2p(agg).reachable(a, "t1"), what="the receiver's listener")
        await agg.backend.send(a, "t1", b"small")  # opens the stream
        os.kill(peer.pid, signal.SIGSTOP)  # stops reading: the next message stalls
        sending = asyncio.create_task(agg.backend.send(a, "t1", bytes(32 << 20)))
        await asyncio.sleep(0.3)
        assert not sending.done()
        os.kill(peer.pid, signal.SIGKILL)
        await asyncio.wait_for(sending, 5)  # the stream breaks; the broker side gives up on t1
        await eventually(lambda: agg.leaves(a) == ["t1"], what="the killed receiver leaves")
    finally:
        with contextlib.suppress(ProcessLookupError):
            peer.kill()
        await peer.wait()


async def test_over_mqtt_membership(mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    cluster = Cluster("p2p", f"{host}:{port}")
    try:
        agg, t1 = cluster.end("agg"), cluster.end("t1")
        a, (s1,) = await linked(agg, t1)
        payload = np.random.default_rng(2).bytes(BIG)
        with capture_logs() as logs:
            await t1.backend.send(s1, "agg", payload)
            await eventually(lambda: agg.received(a) == [payload], what="the payload")
        assert any(e["event"] == "p2p stream open" for e in logs)
    finally:
        await cluster.close()


def test_flame_sim_runs_two_tier_over_p2p(rabbit_url: str, tmp_path: Path) -> None:
    argv = [str(EXAMPLES / "two_tier_fedavg"), "--backend", "p2p", "--broker", rabbit_url]
    argv += ["--preload", "torch,flame_sdk.roles,flame_sdk.workloads.digits,aio_pika"]
    with pytest.raises(SystemExit) as exit_info:
        flame_sim([*argv, "--rounds", "2", "--workdir", str(tmp_path), "--timeout", "120"])
    logs = {path.name: path.read_text() for path in tmp_path.rglob("*.log")}
    assert exit_info.value.code == 0, {name: text[-1500:] for name, text in logs.items()}
    assert logs and all("p2p stream open" in text for text in logs.values()), logs.keys()
