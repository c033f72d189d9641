"""Fixtures of the backend contract suite: a cluster of recorded ends on one adapter, per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiomqtt
import pytest

from flame_sdk.backends import create_backend
from flame_sdk.backends.base import Backend, Scope
from flame_sdk.backends.p2p import ENVELOPE, ENVELOPE_MAGIC, EnvelopeKind
from flame_sdk.backends.rabbitmq import exchange_name, unicast_key
from tests.support.wait import eventually

# Short liveness figures keep the suite fast; chunks small enough that most tests chunk.
BROKER_OPTIONS: dict[str, Any] = {"heartbeat_interval": 0.1, "liveness_timeout": 1.0}


@dataclass
class End:
    """A backend whose handler calls are recorded."""

    end_id: str
    job_id: str
    backend: Backend
    membership: list[tuple[str, Scope, str]] = field(default_factory=list)  # (join|leave, ..)
    messages: list[tuple[Scope, str, bytes]] = field(default_factory=list)
    fail_next: int = 0

    def __post_init__(self) -> None:
        self.backend.bind(self._on_join, self._on_leave, self._on_message)

    async def _on_join(self, scope: Scope, peer: str) -> None:
        self.membership.append(("join", scope, peer))

    async def _on_leave(self, scope: Scope, peer: str) -> None:
        self.membership.append(("leave", scope, peer))

    def joins(self, scope: Scope) -> list[str]:
        return [p for kind, s, p in self.membership if kind == "join" and s == scope]

    def leaves(self, scope: Scope) -> list[str]:
        return [p for kind, s, p in self.membership if kind == "leave" and s == scope]

    async def _on_message(self, scope: Scope, peer: str, data: bytes) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("handler failure injected by the test")
        self.messages.append((scope, peer, data))

    def scope(self, me: str, other: str, channel: str = "param", group: str = "default") -> Scope:
        return Scope(self.job_id, channel, group, me, other, self.end_id)

    async def join(
        self, me: str, other: str, channel: str = "param", group: str = "default"
    ) -> Scope:
        scope = self.scope(me, other, channel, group)
        await self.backend.join(scope)
        return scope

    def peers(self, scope: Scope) -> list[str]:
        """Ends currently known on `scope`, replaying the recorded join/leave events."""
        known: list[str] = []
        for kind, s, peer in self.membership:
            if s == scope and kind == "join":
                known.append(peer)
            elif s == scope and peer in known:
                known.remove(peer)
        return sorted(known)

    def received(self, scope: Scope | None = None, sender: str | None = None) -> list[bytes]:
        return [
            d
            for s, p, d in self.messages
            if (scope is None or s == scope) and (sender is None or p == sender)
        ]


class Cluster:
    """Ends of one fresh job on one adapter; `inject` publishes raw bytes to an end's scope."""

    def __init__(self, sort: str, broker: str, shm_dir: str = "") -> None:
        self.sort, self.broker = sort, broker
        self.shm_dir = shm_dir  # the shared-memory directory of its broker ends (same host)
        self.job_id = f"job-{uuid.uuid4().hex[:12]}"
        self.ends: list[End] = []

    def end(self, end_id: str, broker: str | None = None, **options: Any) -> End:
        """A new end, connected to the cluster's broker unless `broker` says otherwise."""
        if self.sort == "local":
            options = {k: v for k, v in options.items() if k == "liveness_timeout"}
        else:
            options = {**BROKER_OPTIONS, "shm_dir": self.shm_dir, **options}
        backend = create_backend(self.sort, broker or self.broker, self.job_id, end_id, **options)
        end = End(end_id, self.job_id, backend)
        self.ends.append(end)
        return end

    async def unicast_once(self, payload: bytes) -> None:
        """Two fresh ends (aggregator `agg`, trainer `t1`) join; the trainer's unicast of
        `payload` reaches the aggregator (bounded waits)."""
        agg, trainer = self.end("agg"), self.end("t1")
        a = await agg.join("aggregator", "trainer")
        t = await trainer.join("trainer", "aggregator")
        await eventually(lambda: agg.peers(a) == ["t1"], what="the aggregator sees the trainer")
        await trainer.backend.send(t, "agg", payload)
        await eventually(lambda: agg.received(a) == [payload], what="the unicast")

    def payload(self, body: bytes) -> bytes:
        """What a well-formed injected frame carries so that `body` is delivered: p2p wraps
        the payloads of its broker side in an envelope (sequence 0 of a fresh stream)."""
        if self.sort == "p2p":
            return ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.DATA, 7, 0) + body
        return body

    async def inject(self, scope: Scope, raw: bytes) -> None:
        """Publish `raw` exactly where a unicast to the end of `scope` would travel (p2p: on
        its broker side)."""
        if self.sort in ("rabbitmq", "p2p"):
            connection = await aio_pika.connect(self.broker)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(exchange_name(self.job_id))
                key = unicast_key(scope.channel, scope.group, scope.me, scope.end_id)
                await exchange.publish(aio_pika.Message(raw), routing_key=key)
        elif self.sort == "mqtt":
            host, port = self.broker.split(":")
            async with aiomqtt.Client(host, int(port)) as client:
                topic = (
                    f"/flame/{scope.job_id}/{scope.channel}/{scope.group}/UNICAST/"
                    f"{scope.other}/intruder/{scope.me}/{scope.end_id}"
                )
                await client.publish(topic, raw, qos=1)
        else:
            raise NotImplementedError(f"{self.sort} has no frames to corrupt")

    async def close(self) -> None:
        for end in self.ends:
            with contextlib.suppress(Exception):  # a killed end may fail; close the others
                await end.backend.close()


@pytest.fixture(
    params=[
        "local",
        pytest.param("rabbitmq", marks=pytest.mark.integration),
        pytest.param("mqtt", marks=pytest.mark.integration),
        pytest.param("p2p", marks=pytest.mark.integration),  # membership over RabbitMQ
    ]
)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    sort: str = request.param
    if sort in ("rabbitmq", "p2p"):
        broker = request.getfixturevalue("rabbit_url")
    elif sort == "mqtt":
        host, port = request.getfixturevalue("mqtt_broker")
        broker = f"{host}:{port}"
    else:
        broker = ""
    cluster = Cluster(sort, broker, str(request.getfixturevalue("tmp_path") / "shm"))
    yield cluster
    await cluster.close()
