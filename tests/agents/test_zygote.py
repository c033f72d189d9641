"""The flamelet zygote: forked flamelets behave like spawned ones, and its loss is survivable."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from flame_common.documents import TaskDoc
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import WorkerSpec
from flame_controller.deployers.local import LocalDeployer, flamelet_env
from flame_controller.deployers.zygote import ORPHANED, ZygoteClient, ZygoteError
from schemas.events import AgentRegisteredEvent
from tests.support.tap import EventTap

pytestmark = pytest.mark.integration


def args(task: str, apiserver: str = "http://127.0.0.1:9") -> list[str]:
    return ["--job", "jz", "--task", task, "--apiserver", apiserver]


async def test_forked_flamelet_runs_main_with_its_args_env_and_log(
    settings: FlameSettings, tmp_path: Path
):
    zygote = ZygoteClient()
    await zygote.start()
    try:
        log = tmp_path / "bad.log"
        child = await zygote.spawn(args("t", apiserver="ftp://x"), flamelet_env(settings, "k"), log)
        assert await asyncio.wait_for(child.wait(), 30) == 2  # argparse's exit code
        assert "--apiserver must be an http(s) URL, got 'ftp://x'" in log.read_text()
        missing_key = {
            k: v for k, v in flamelet_env(settings, "k").items() if k != "FLAME_TASK_KEY"
        }
        child = await zygote.spawn(args("t"), missing_key, log)
        assert await asyncio.wait_for(child.wait(), 30) == 2
        assert "missing --key" in log.read_text()  # the env was replaced, not merged
    finally:
        await zygote.close()
    assert zygote.pid is not None and not psutil.pid_exists(zygote.pid)


async def start(deployer: LocalDeployer, task: str) -> None:
    await TaskDoc(job_id="jz", task_id=task, role="trainer", key=f"key-{task}").insert()
    await deployer.start(WorkerSpec("jz", task, f"key-{task}", "http://127.0.0.1:9"))


async def registered(tap: EventTap, task: str) -> None:
    await tap.wait_for(AgentRegisteredEvent, lambda e: e.task_id == task)


async def test_flamelets_of_a_dead_zygote_stop_and_the_deployer_spawns_instead(
    settings: FlameSettings, db, notifier, tap: EventTap, tmp_path: Path
):
    deployer = LocalDeployer(settings)
    await deployer.open()
    assert deployer.zygote is not None
    try:
        await start(deployer, "a")
        pid = deployer.pid("jz", "a")
        assert pid is not None
        await registered(tap, "a")
        proc = psutil.Process(pid)
        assert proc.name() == "flamelet" and os.getpgid(pid) == pid  # own session and group
        assert proc.parent().pid == deployer.zygote.pid
        os.kill(deployer.zygote.pid, signal.SIGKILL)
        # the flamelet got its death signal (SIGTERM): unassigned, it leaves at once
        assert await asyncio.wait_for(deployer._workers[("jz", "a")].proc.wait(), 15) == ORPHANED
        assert not psutil.pid_exists(pid) or proc.status() == psutil.STATUS_ZOMBIE
        with pytest.raises(ZygoteError):
            await deployer.zygote.spawn(args("b"), {}, tmp_path / "b.log")
        await start(deployer, "b")
        spawned = deployer.pid("jz", "b")
        assert spawned is not None and psutil.Process(spawned).parent().pid == os.getpid()
        await registered(tap, "b")
    finally:
        await deployer.close()
    assert deployer.running() == []


async def test_without_zygote_flamelets_are_spawned(
    settings: FlameSettings, db, notifier, tap: EventTap
):
    deployer = LocalDeployer(settings, zygote=False)
    await deployer.open()
    try:
        await start(deployer, "c")
        pid = deployer.pid("jz", "c")
        assert pid is not None and psutil.Process(pid).parent().pid == os.getpid()
        await registered(tap, "c")
        # titled by the flamelet itself (`ps -eo args`), the same whether forked or spawned
        assert " ".join(psutil.Process(pid).cmdline()).strip() == "flamelet job=jz task=c"
    finally:
        await deployer.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
