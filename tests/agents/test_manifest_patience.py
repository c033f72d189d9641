"""A flamelet waits out an apiserver that starts late, within FLAME_MANIFEST_PATIENCE."""

from __future__ import annotations

import asyncio

import pytest

from flame_common.documents import TaskDoc
from flame_common.embedded import free_port
from tests.agents.helpers import ManifestServer, publish
from tests.agents.test_flamelet import assigned, start_flamelet, statuses

pytestmark = pytest.mark.integration

LATE = 10.0  # seconds the apiserver is away: longer than the old 5 attempts (~7.5 s)


async def test_apiserver_started_late_is_waited_for(settings, db, notifier, recorder, tmp_path):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    port = free_port()
    proc = await start_flamelet(
        settings, "j1", "t1", "k", f"http://127.0.0.1:{port}", tmp_path / "w",
        FLAME_MANIFEST_PATIENCE="60",
    )  # fmt: skip
    await recorder.wait_for(lambda e: e.type == "agent.registered")
    await publish(settings, assigned("j1", "t1"))
    await asyncio.sleep(LATE)
    assert recorder.of("task.status_changed", "t1") == []  # still waiting, not failed
    server = ManifestServer(port=port)
    server.add("j1", "t1", "k", "trainer", "ok")
    server.start()
    try:
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        server.stop()
    assert statuses(recorder) == ["running", "completed"]


async def test_apiserver_away_longer_than_the_patience_fails_the_task_clearly(
    settings, db, notifier, recorder, tmp_path
):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    apiserver = f"http://127.0.0.1:{free_port()}"
    proc = await start_flamelet(
        settings, "j1", "t1", "k", apiserver, tmp_path / "w", FLAME_MANIFEST_PATIENCE="2"
    )
    await recorder.wait_for(lambda e: e.type == "agent.registered")
    await publish(settings, assigned("j1", "t1"))
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    final = recorder.of("task.status_changed", "t1")[-1]
    assert final.payload.state.value == "failed"
    assert final.payload.reason == "task preparation failed"
    assert f"no manifest after 2 s: cannot reach the apiserver at {apiserver}" in (
        final.payload.log_tail
    )
