"""Process titles on a running local stack: `ps` tells each service, flamelet and role code
apart, and `flame status` lists the live workers per job."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from flame_common.embedded import EmbeddedMongo
from tests.agents.stack import (
    EXAMPLES,
    LocalStack,
    create_job,
    job_events,
    local_stack,
    role_pids,
    wait_state,
)
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICES = {
    "apiserver": "flame-apiserver",
    "controller": "flame-controller",
    "notifier": "flame-notifier",
    "deployer": "flame-deployer compute=default kind=local",
}


@pytest.fixture(scope="module", params=["warm", "exec"])
def stack(
    request: pytest.FixtureRequest,
    mongo_server: EmbeddedMongo,
    rabbit_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    """A stack whose flamelets start role code warm (forked) or in a fresh interpreter."""
    warm = "true" if request.param == "warm" else "false"
    with local_stack(
        mongo_server.url, tmp_path_factory.mktemp("stack"), FLAME_WARM_START=warm
    ) as s:
        yield s


def ps_args() -> dict[int, str]:
    """`ps -eo pid=,args=`: every process's command line as `ps` shows it."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    rows = (line.strip().split(" ", 1) for line in out.splitlines() if line.strip())
    return {int(row[0]): row[1].strip() if len(row) > 1 else "" for row in rows}


async def test_ps_and_flame_status_tell_every_process_apart(stack: LocalStack):
    args = ps_args()
    for part, title in SERVICES.items():
        assert args[stack.pid(part)] == title
    # The deployer launches its zygote in the background once it is up.
    await eventually(lambda: stack.zygote() is not None, timeout=30, what="the zygote")
    zygote = stack.zygote()
    assert zygote is not None and ps_args()[zygote.pid] == "flame-zygote"

    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "sleep", "aggregator": "sleep"}
        )
        await client.jobs.start(job_id)
        await wait_state(client, job_id, {"running"}, 60)
        await eventually(lambda: len(role_pids(stack, job_id)) == 2, timeout=30, what="2 roles")
        tasks = await client.tasks.list(job_id)
        registered = [e for e in await job_events(client, job_id) if e.type == "agent.registered"]
        flamelets = {e.task_id: e.payload.pid for e in registered}
        role_code = {
            path.parent.name: int(path.read_text())
            for path in (stack.home / "work" / job_id).glob("*/role.pid")
        }

        args = ps_args()
        status = stack.flame("status")
        assert status.returncode == 0, status.stderr + status.stdout
        assert f"  job {job_id}\n" in status.stdout
        assert "workers    2 in 1 job(s)" in status.stdout
        for task in tasks:
            short = task.task_id[:12]
            flamelet, role = flamelets[task.task_id], role_code[task.task_id]
            assert args[flamelet] == f"flamelet job={job_id} task={short} role={task.role}"
            assert args[role] == f"flame-role {task.role} task={short} job={job_id}"
            line = next(ln for ln in status.stdout.splitlines() if f"task {short}" in ln)
            assert f"role {task.role} " in line
            assert f"flamelet pid {flamelet} " in line and line.endswith(f"role pid {role}")

        await client.jobs.stop(job_id)
        await wait_state(client, job_id, {"terminated", "failed", "completed"}, 15)
    await eventually(lambda: stack.workers() == [], timeout=15)
    status = stack.flame("status")
    assert "workers    0 in 0 job(s)" in status.stdout and job_id not in status.stdout
