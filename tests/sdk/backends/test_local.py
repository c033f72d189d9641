"""Local-backend specifics: ends on different event loops (threads) and hub isolation."""

from __future__ import annotations

import asyncio
import threading
import uuid

from flame_sdk.backends.base import Scope
from flame_sdk.backends.local import LocalBackend, LocalHub
from tests.support.wait import eventually


def test_ends_on_different_event_loops_exchange_messages() -> None:
    job = f"job-{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    ready, done = threading.Event(), threading.Event()

    async def aggregator() -> None:
        backend = LocalBackend(job, "agg")

        async def on_message(scope: Scope, peer: str, data: bytes) -> None:
            got.append(data)
            done.set()

        async def ignore(scope: Scope, peer: str) -> None:
            return None

        backend.bind(ignore, ignore, on_message)
        await backend.join(Scope(job, "param", "default", "aggregator", "trainer", "agg"))
        ready.set()
        await eventually(done.is_set, what="the trainer's message")
        await backend.close()

    thread = threading.Thread(target=asyncio.run, args=(aggregator(),))
    thread.start()
    assert ready.wait(10)

    async def trainer() -> None:
        backend = LocalBackend(job, "t1")
        scope = Scope(job, "param", "default", "trainer", "aggregator", "t1")
        await backend.join(scope)
        await backend.send(scope, "agg", b"across loops")
        await asyncio.to_thread(done.wait, 10)
        await backend.close()

    asyncio.run(trainer())
    thread.join(10)
    assert got == [b"across loops"]


async def test_an_explicit_hub_isolates_ends_of_the_same_job() -> None:
    job = f"job-{uuid.uuid4().hex[:8]}"
    seen: dict[str, list[str]] = {"agg": [], "agg2": []}

    async def on_join(scope: Scope, peer: str) -> None:
        seen[scope.end_id].append(peer)

    async def ignore(*_: object) -> None:
        return None

    private = LocalBackend(job, "agg", hub=LocalHub())
    private.bind(on_join, ignore, ignore)
    shared = LocalBackend(job, "t1")
    shared_peer = LocalBackend(job, "agg2")
    shared_peer.bind(on_join, ignore, ignore)
    await private.join(Scope(job, "param", "default", "aggregator", "trainer", "agg"))
    await shared_peer.join(Scope(job, "param", "default", "aggregator", "trainer", "agg2"))
    await shared.join(Scope(job, "param", "default", "trainer", "aggregator", "t1"))
    await eventually(lambda: seen["agg2"], what="agg2 sees t1 on the shared hub")
    assert seen == {"agg": [], "agg2": ["t1"]}  # the private hub saw nobody
    for backend in (private, shared, shared_peer):
        await backend.close()
