"""flamelet as a subprocess: runs role code, reports log tails, obeys stop, survives outages."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aio_pika
import psutil
import pytest

from flame_common.busnames import names
from flame_common.documents import TaskDoc
from flame_common.settings import FlameSettings
from flame_controller.deployers.local import flamelet_env
from schemas.events import (
    AgentLostEvent,
    AgentRegisteredEvent,
    TaskAssigned,
    TaskAssignedEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    TaskStopRequested,
    TaskStopRequestedEvent,
)
from schemas.states import JobState
from tests.agents.helpers import CutOffProxy, ManifestServer, publish
from tests.support.clock import FakeClock
from tests.support.tap import EventTap
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


def assigned(job: str, task: str) -> TaskAssignedEvent:
    return TaskAssignedEvent(payload=TaskAssigned(), job_id=job, task_id=task)


async def start_flamelet(
    settings: FlameSettings,
    job: str,
    task: str,
    key: str,
    apiserver: str,
    work: Path,
    *options: str,
    **env: str,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flamelet", "--job", job, "--task", task, "--apiserver", apiserver,
        "--work-dir", str(work), *options,
        env={**flamelet_env(settings, key), **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=open(work.parent / f"{task}.stderr", "ab"),
    )  # fmt: skip


async def run_task(
    settings: FlameSettings,
    tap: EventTap,
    manifests: ManifestServer,
    tmp_path: Path,
    script: str,
    task: str = "t1",
    **env: str,
) -> tuple[asyncio.subprocess.Process, Path]:
    """Seed a task, start its flamelet, assign it once it registered (the controller's part)."""
    await TaskDoc(job_id="j1", task_id=task, role="trainer", key="k").insert()
    manifests.add("j1", task, "k", "trainer", script)
    work = tmp_path / task
    proc = await start_flamelet(settings, "j1", task, "k", manifests.url, work, **env)
    await tap.wait_for(AgentRegisteredEvent, lambda e: e.task_id == task)
    await publish(settings, assigned("j1", task))
    return proc, work


async def inbox_exists(settings: FlameSettings, task_id: str) -> bool:
    connection = await aio_pika.connect(settings.rabbit_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(names(settings).agent_queue(task_id), passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return True


# The role code runs in the agent's pre-forked child (default) or in a fresh interpreter.
LAUNCH = pytest.mark.parametrize(
    "launch", [{}, {"FLAME_WARM_START": "false"}], ids=["warm", "exec"]
)


def statuses(tap: EventTap, task: str = "t1") -> list[str]:
    """States reported for a task, one per event id (delivery is at least once)."""
    events = {e.id: e for e in tap.of(TaskStatusChangedEvent, lambda e: e.task_id == task)}
    return [e.payload.state.value for e in events.values()]


@LAUNCH
async def test_role_code_runs_to_completion(
    settings, db, notifier, tap, manifests, tmp_path, launch
):
    proc, work = await run_task(settings, tap, manifests, tmp_path, "ok", **launch)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    final = tap.of(TaskStatusChangedEvent, lambda e: e.task_id == "t1")[-1]
    assert statuses(tap) == ["running", "completed"]
    assert final.payload.exit_code == 0 and "hello from trainer task t1" in final.payload.log_tail
    # the output's size and end ride on the final status (a short output: all of it)
    assert final.payload.log_size == (work / "task.log").stat().st_size > 0
    assert final.payload.log_tail_at == 0
    config = json.loads((work / "config").read_text())
    assert config["taskid"] == "t1" and config["role"] == "trainer"
    assert not (work / "final-report.json").exists()
    assert not await inbox_exists(settings, "t1")  # the agent removed its inbox on the way out


@LAUNCH
async def test_failing_role_reports_its_log_tail(
    settings, db, notifier, tap, manifests, tmp_path, launch
):
    proc, work = await run_task(settings, tap, manifests, tmp_path, "fail", **launch)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    final = tap.of(TaskStatusChangedEvent, lambda e: e.task_id == "t1")[-1]
    assert statuses(tap) == ["running", "failed"]
    assert final.payload.exit_code == 3
    assert "fatal: the data is cursed" in final.payload.log_tail
    assert "working on step 199" in final.payload.log_tail
    assert "working on step 0\n" not in final.payload.log_tail  # only the tail
    output = (work / "task.log").read_bytes()
    at = final.payload.log_tail_at
    assert at is not None and at > 0 and output[at:] == final.payload.log_tail.encode()


async def test_prefetch_unpacks_before_the_assignment(
    settings, db, notifier, tap, manifests, tmp_path
):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    manifests.add("j1", "t1", "k", "trainer", "ok")
    work = tmp_path / "w"
    proc = await start_flamelet(settings, "j1", "t1", "k", manifests.url, work, "--prefetch")
    await tap.wait_for(AgentRegisteredEvent)
    await eventually(lambda: (work / "config").exists(), what="the prefetched config")
    assert (work / "code" / "trainer" / "main.py").is_file()
    assert statuses(tap) == []  # nothing runs before the assignment
    await publish(settings, assigned("j1", "t1"))
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert statuses(tap) == ["running", "completed"]


@pytest.mark.parametrize("options", [(), ("--prefetch",)])
async def test_wrong_key_fails_the_task(settings, db, notifier, tap, manifests, tmp_path, options):
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    manifests.add("j1", "t1", "other-key", "trainer", "ok")
    proc = await start_flamelet(settings, "j1", "t1", "k", manifests.url, tmp_path / "w", *options)
    await tap.wait_for(AgentRegisteredEvent)
    await publish(settings, assigned("j1", "t1"))
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    final = tap.of(TaskStatusChangedEvent, lambda e: e.task_id == "t1")[-1]
    assert final.payload.state.value == "failed" and "401" in final.payload.log_tail


@LAUNCH
async def test_stop_kills_the_role_code_and_reports_terminated(
    settings, db, notifier, tap, manifests, tmp_path, launch
):
    proc, work = await run_task(settings, tap, manifests, tmp_path, "sleep", **launch)
    await tap.wait_for(TaskStatusChangedEvent)
    await eventually(lambda: (work / "role.pid").exists(), what="the role code's pid file")
    role_pid = int((work / "role.pid").read_text())
    await publish(
        settings,
        TaskStopRequestedEvent(payload=TaskStopRequested(reason="user"), job_id="j1", task_id="t1"),
    )
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert statuses(tap) == ["running", "terminated"]
    assert not psutil.pid_exists(role_pid) or psutil.Process(role_pid).status() == "zombie"


@LAUNCH
async def test_killed_flamelet_takes_its_role_code_along_and_is_lost(
    settings, db, notifier, tap: EventTap, clock: FakeClock, manifests, tmp_path, launch
):
    proc, work = await run_task(settings, tap, manifests, tmp_path, "sleep", **launch)
    await eventually(lambda: (work / "role.pid").exists(), what="the role code's pid file")
    role_pid = int((work / "role.pid").read_text())
    proc.kill()
    await proc.wait()

    def lost() -> list[AgentLostEvent]:
        # the notifier's clock moves a whole timeout per look: once a heartbeat sent before the
        # kill is handled, the agent is silent for longer than the timeout
        clock.advance(settings.heartbeat_timeout)
        return tap.of(AgentLostEvent)

    (event,) = await eventually(lost, what="agent.lost of the killed flamelet")
    assert event.task_id == "t1"
    await eventually(lambda: not psutil.pid_exists(role_pid), what=f"role code {role_pid} gone")


async def test_final_report_survives_a_broker_outage(
    settings, db, notifier, tap, manifests, tmp_path
):
    proxy = CutOffProxy()
    await proxy.start()
    via_proxy = settings.rabbit_url.replace(":5672", f":{proxy.port}")
    await TaskDoc(job_id="j1", task_id="t1", role="trainer", key="k").insert()
    manifests.add("j1", "t1", "k", "trainer", "short")
    work = tmp_path / "t1"
    proc = await start_flamelet(
        settings, "j1", "t1", "k", manifests.url, work, FLAME_RABBIT_URL=via_proxy, ROLE_SECONDS="3"
    )
    try:
        await tap.wait_for(AgentRegisteredEvent)
        await publish(settings, assigned("j1", "t1"))
        await tap.wait_for(TaskStatusChangedEvent)
        await asyncio.sleep(0.5)  # let the confirm of `running` reach the agent
        proxy.cut()  # the broker is gone for the agent while its role code finishes
        # the role code ends (ROLE_SECONDS) and the flamelet keeps its final report on disk
        await eventually(lambda: (work / "final-report.json").exists(), what="the final report")
        stderr = (tmp_path / "t1.stderr").read_text()[-3000:]
        assert (work / "final-report.json").exists(), (os.listdir(work), stderr)
        assert statuses(tap) == ["running"]
        proxy.restore()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert statuses(tap) == ["running", "completed"]
        assert not (work / "final-report.json").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proxy.close()


async def test_restarted_flamelet_resends_a_pending_final_report(settings, tap, tmp_path):
    work = tmp_path / "t9"
    work.mkdir()
    event = TaskStatusChangedEvent(
        payload=TaskStatusChanged(state=JobState.COMPLETED, exit_code=0),
        job_id="j9",
        task_id="t9",
        source="flamelet",
    )
    (work / "final-report.json").write_text(event.model_dump_json())
    proc = await start_flamelet(settings, "j9", "t9", "k", "http://127.0.0.1:9", work)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    got = await tap.wait_for(TaskStatusChangedEvent)
    assert got.id == event.id and not (work / "final-report.json").exists()
    assert os.listdir(work) == []
