"""Local deployer: worker events of its compute become flamelets, released without orphans."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from flame_common.documents import TaskDoc
from flame_common.settings import FlameSettings
from flame_controller.deployers.app import running_deployer
from schemas.events import (
    AgentRegisteredEvent,
    TaskAssigned,
    TaskAssignedEvent,
    TaskStatusChangedEvent,
    WorkerCreatedEvent,
    WorkerFailedEvent,
)
from tests.agents.helpers import ManifestServer, publish, requested
from tests.support.tap import EventTap
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def seed(manifests: ManifestServer, job: str, tasks: list[str], script: str = "ok") -> None:
    for t in tasks:
        await TaskDoc(job_id=job, task_id=t, role="trainer", key=f"key-{t}").insert()
        manifests.add(job, t, f"key-{t}", "trainer", script)


async def test_requested_workers_start_register_and_are_released(
    settings: FlameSettings, db, notifier, tap: EventTap, manifests: ManifestServer
):
    settings = settings.with_overrides(api_url=manifests.url)
    await seed(manifests, "j1", ["a", "b"])
    async with running_deployer(settings, register=False) as deployer:
        await publish(settings, requested("j1", ["a", "b"], compute="elsewhere"))
        await publish(settings, requested("j1", ["a", "b", "ghost"]))
        for t in ("a", "b"):
            await tap.wait_for(AgentRegisteredEvent, lambda e, t=t: e.task_id == t)
        failed = await tap.wait_for(WorkerFailedEvent)
        assert failed.task_id == "ghost" and "no such task" in failed.payload.reason
        created = tap.of(WorkerCreatedEvent)
        assert sorted(e.task_id for e in created) == ["a", "b"]
        assert all(e.payload.compute_id == "default" for e in created)
        pids = [deployer.pid("j1", t) for t in ("a", "b")]
        assert all(pid and not gone(pid) for pid in pids)
        await publish(settings, requested("j1", ["a", "b"], type_="worker.released"))
        await eventually(lambda: all(gone(p) for p in pids if p), what=f"{pids} gone")
        assert deployer.running() == []
    assert len(tap.of(WorkerCreatedEvent)) == 2  # the other compute's request was ignored


async def test_shutdown_leaves_no_orphans(
    settings: FlameSettings,
    db,
    notifier,
    tap: EventTap,
    manifests: ManifestServer,
    tmp_path: Path,
):
    settings = settings.with_overrides(api_url=manifests.url)
    await seed(manifests, "j2", ["s"], script="sleep")
    async with running_deployer(settings, register=False) as deployer:
        await publish(settings, requested("j2", ["s"]))
        await tap.wait_for(AgentRegisteredEvent)
        await publish(settings, TaskAssignedEvent(payload=TaskAssigned(), job_id="j2", task_id="s"))
        await tap.wait_for(TaskStatusChangedEvent)
        flamelet = deployer.pid("j2", "s")
        assert flamelet is not None
        tree = psutil.Process(flamelet).children(recursive=True)
        assert tree, "the role code runs below the flamelet"
    assert gone(flamelet)
    assert all(gone(p.pid) for p in tree)
    # the flamelet reported its task terminated on the way out
    final = await tap.wait_for(
        TaskStatusChangedEvent, lambda e: e.payload.state.value == "terminated"
    )
    assert final.task_id == "s"


async def test_a_flamelet_that_cannot_start_is_a_failed_worker(
    settings: FlameSettings, db, tap: EventTap, manifests: ManifestServer
):
    settings = settings.with_overrides(api_url="ftp://nowhere")
    await seed(manifests, "j3", ["x"])
    async with running_deployer(settings, register=False):
        await publish(settings, requested("j3", ["x"]))
        failed = await tap.wait_for(WorkerFailedEvent)
    assert failed.task_id == "x" and "--apiserver must be" in failed.payload.reason
