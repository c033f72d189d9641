"""A flamelet waits out an apiserver that starts late, within FLAME_MANIFEST_PATIENCE."""

from __future__ import annotations

import asyncio

import pytest

from flame_common.documents import TaskDoc
from flame_common.embedded import free_port
from schemas.events import AgentRegisteredEvent, TaskStatusChangedEvent
from tests.agents.helpers import ManifestServer, publish
from tests.agents.test_flamelet import assigned, start_flamelet, statuses
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

LATE_ATTEMPTS = 6  # fetches the apiserver turns away: more than the old limit of 5 (~7.5 s)


class Unavailable:
    """An apiserver that answers every request 503 (a failing one, retried), counting them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", self.port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_apiserver_started_late_is_waited_for(settings, db, notifier, tap, tmp_path):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    port = free_port()
    proc = await start_flamelet(
        settings, "j1", "t1", "k", f"http://127.0.0.1:{port}", tmp_path / "w",
        FLAME_MANIFEST_PATIENCE="60",
    )  # fmt: skip
    unavailable = Unavailable(port)
    await unavailable.start()
    try:
        await tap.wait_for(AgentRegisteredEvent)
        await publish(settings, assigned("j1", "t1"))
        await eventually(
            lambda: unavailable.requests >= LATE_ATTEMPTS,
            timeout=60,
            what=f"{LATE_ATTEMPTS} manifest fetches turned away",
        )
    finally:
        await unavailable.stop()
    assert statuses(tap) == []  # still waiting, not failed
    server = ManifestServer(port=port)
    server.add("j1", "t1", "k", "trainer", "ok")
    server.start()
    try:
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        server.stop()
    assert statuses(tap) == ["running", "completed"]


async def test_apiserver_away_longer_than_the_patience_fails_the_task_clearly(
    settings, db, notifier, tap, tmp_path
):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    apiserver = f"http://127.0.0.1:{free_port()}"
    proc = await start_flamelet(
        settings, "j1", "t1", "k", apiserver, tmp_path / "w", FLAME_MANIFEST_PATIENCE="2"
    )
    await tap.wait_for(AgentRegisteredEvent)
    await publish(settings, assigned("j1", "t1"))
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    final = tap.of(TaskStatusChangedEvent, lambda e: e.task_id == "t1")[-1]
    assert final.payload.state.value == "failed"
    assert final.payload.reason == "task preparation failed"
    assert f"no manifest after 2 s: cannot reach the apiserver at {apiserver}" in (
        final.payload.log_tail
    )
