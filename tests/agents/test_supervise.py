"""`flame up` supervises its services: a killed one comes back, one that keeps crashing is left
down with a clear status, and nothing outlives `flame down` or a killed supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk.cli.supervisor import RestartPolicy, exit_reason
from tests.agents.stack import EXAMPLES, LocalStack, create_job, local_stack, wait_state
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICES = ("apiserver", "controller", "notifier", "deployer")
TWO_TIER = {"trainer": "ok", "aggregator": "ok"}


@pytest.fixture
def stack(mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    """A stack whose supervisor gives a service up after its second crash within 60 s."""
    with local_stack(mongo_server.url, tmp_path, FLAME_RESTART_LIMIT="2") as s:
        yield s


def state(stack: LocalStack, service: str) -> dict:
    text = (stack.home / "run" / "supervisor.json").read_text()
    return json.loads(text)["services"][service]  # type: ignore[no-any-return]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def restarted(stack: LocalStack, service: str, old_pid: int) -> bool:
    svc = state(stack, service)
    return svc["state"] == "running" and svc["pid"] not in (None, old_pid)


def tree(stack: LocalStack) -> list[int]:
    """The supervisor and every process below it."""
    supervisor = psutil.Process(stack.pid("supervisor"))
    return [supervisor.pid, *(p.pid for p in supervisor.children(recursive=True))]


def test_restart_policy_backs_off_then_gives_up_and_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(max_delay=4, limit=4, window=60)
    assert [policy.after_exit(t, 0.5) for t in (0, 1, 3)] == [1, 2, 4]
    assert policy.after_exit(8, 0.5) is None  # 4 crashes within 60 s
    stable = RestartPolicy(max_delay=30, limit=3, window=60)
    assert [stable.after_exit(t, 0.5) for t in (0, 1)] == [1, 2]
    assert stable.after_exit(200, 100) == 1  # ran longer than the window: backoff starts over
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(3) == "exited with code 3"


async def test_killed_controller_comes_back_and_jobs_still_run(stack: LocalStack):
    old = stack.pid("controller")
    os.kill(old, signal.SIGKILL)
    await asyncio.to_thread(
        wait_until, lambda: restarted(stack, "controller", old), timeout=30, what="restart"
    )
    svc = state(stack, "controller")
    assert svc["restarts"] == 1 and svc["last_exit"]["reason"] == "killed by SIGKILL"
    assert stack.pid("controller") == svc["pid"] and alive(svc["pid"])
    status = stack.flame("status")
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("controller "))
    assert f"pid {svc['pid']}" in line and "up since " in line
    assert "restarts 1" in line and "last exit killed by SIGKILL at " in line
    async with stack.client() as client:
        job_id = await create_job(client, EXAMPLES / "mnist", TWO_TIER)
        await client.jobs.start(job_id)
        done = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 90)
        assert done.state.value == "completed", done.reason


def test_a_service_that_keeps_crashing_is_left_down_until_flame_up(stack: LocalStack):
    first = stack.pid("notifier")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: restarted(stack, "notifier", first), timeout=30, what="first restart")
    os.kill(state(stack, "notifier")["pid"], signal.SIGKILL)
    wait_until(lambda: state(stack, "notifier")["state"] == "down", timeout=10, what="left down")
    # it really stays down: a later decision of the supervisor (the deployer's restart, after its
    # own backoff) still finds it down, not restarting
    deployer = stack.pid("deployer")
    os.kill(deployer, signal.SIGKILL)
    wait_until(lambda: restarted(stack, "deployer", deployer), timeout=30, what="deployer restart")
    assert state(stack, "notifier")["state"] == "down"
    status = stack.flame("status")
    assert status.returncode == 1
    assert any(ln.startswith("notifier   down ") for ln in status.stdout.splitlines())
    assert "restarts 1  last exit killed by SIGKILL" in status.stdout
    up = stack.flame("up")
    assert up.returncode == 0, up.stderr
    svc = state(stack, "notifier")
    assert svc["state"] == "running" and alive(svc["pid"]) and svc["restarts"] == 2
    assert stack.flame("status").returncode == 0


def test_down_leaves_no_process(mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path: Path):
    with local_stack(mongo_server.url, tmp_path) as stack:
        pids = tree(stack)
        assert {stack.pid(s) for s in SERVICES} <= set(pids)
        down = stack.flame("down")
        assert down.returncode == 0, down.stderr
        assert "stopped supervisor" in down.stdout
    assert [p for p in pids if alive(p)] == []
    assert not any((stack.home / "run" / f"{p}.pid").exists() for p in ("supervisor", *SERVICES))


def test_services_die_with_a_killed_supervisor(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path: Path
):
    with local_stack(mongo_server.url, tmp_path) as stack:
        pids = tree(stack)
        os.kill(stack.pid("supervisor"), signal.SIGKILL)
        wait_until(lambda: not any(alive(p) for p in pids), timeout=30, what="services gone")
        status = stack.flame("status")
        assert status.returncode == 1 and "supervisor stopped" in status.stdout


def test_health_command_checks_process_and_consumers(stack: LocalStack):
    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flame_common.health", *args],
            env=stack.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    for service in ("controller", "notifier", "deployer"):
        result = health(service)
        assert result.returncode == 0 and result.stdout == f"healthy: {service}\n", result.stderr
    missing = health("deployer", "--compute", "nowhere")
    assert missing.returncode == 1
    queue = f"{stack.namespace}.deployer.nowhere"
    assert missing.stderr == f"unhealthy: deployer: no consumer on {queue}\n"
