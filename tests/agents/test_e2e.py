"""End to end through the `flame` stack: jobs run by real flamelets to their end states."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flame_common.embedded import EmbeddedMongo
from schemas.events import EventBase
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

CHAIN = ["worker.created", "agent.registered", "task.assigned", "task.status_changed"]
TWO_TIER = {"trainer": "ok", "aggregator": "ok"}
HIERARCHY = {"trainer": "ok", "middle-aggregator": "ok", "top-aggregator": "ok"}


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("stack")) as s:
        yield s


def assert_chain(events: list[EventBase]) -> None:
    """worker.requested, then per task: created -> registered -> assigned -> status_changed."""
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    requested = [e for e in events if e.type == "worker.requested"]
    assert requested
    tasks = {t for e in requested for t in e.payload.task_ids}
    for task in tasks:
        firsts = []
        for type_ in CHAIN:
            mine = [e.seq for e in events if e.type == type_ and e.task_id == task]
            assert mine, f"no {type_} for task {task}"
            firsts.append(min(mine))
        assert min(e.seq for e in requested) < firsts[0]
        assert firsts == sorted(firsts), f"out of order for {task}: {firsts}"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("example", "roles", "count"), [("mnist", TWO_TIER, 2), ("hier_mnist", HIERARCHY, 7)]
)
async def test_job_runs_to_completion(stack: LocalStack, example, roles, count):
    async with stack.client() as client:
        job_id = await create_job(client, EXAMPLES / example, roles)
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 90)
        assert status.state.value == "completed", status.reason
        tasks = await client.tasks.list(job_id)
        assert len(tasks) == count
        assert {t.state.value for t in tasks} == {"completed"}
        assert {t.role for t in tasks} == set(roles)
        assert_chain(await job_events(client, job_id))
    await eventually(lambda: stack.workers() == [], timeout=15)


async def test_failing_trainer_fails_the_job_with_its_log_tail(stack: LocalStack):
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "fail", "aggregator": "sleep"}
        )
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 60)
        assert status.state.value == "failed"
        tasks = {t.role: t for t in await client.tasks.list(job_id)}
        assert tasks["trainer"].state.value == "failed"
        assert "fatal: the data is cursed" in tasks["trainer"].log
    await eventually(lambda: stack.workers() == [], timeout=20)


async def test_stop_terminates_every_worker(stack: LocalStack):
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "hier_mnist", dict.fromkeys(HIERARCHY, "sleep")
        )
        await client.jobs.start(job_id)
        await wait_state(client, job_id, {"running"}, 60)
        await eventually(lambda: len(role_pids(stack, job_id)) == 7, timeout=30)
        roles = role_pids(stack, job_id)
        await client.jobs.stop(job_id)
        status = await wait_state(client, job_id, {"terminated", "failed", "completed"}, 10)
        assert status.state.value == "terminated"
        await eventually(lambda: stack.workers() == [], timeout=10)
        assert not any(alive(p) for p in roles)
        tasks = await client.tasks.list(job_id)
        assert {t.state.value for t in tasks} == {"terminated"}


async def test_killed_flamelet_is_lost_and_fails_the_job(stack: LocalStack):
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "sleep", "aggregator": "sleep"}
        )
        await client.jobs.start(job_id)
        await wait_state(client, job_id, {"running"}, 60)
        trainer = next(t for t in await client.tasks.list(job_id) if t.role == "trainer")
        registered = [e for e in await job_events(client, job_id) if e.type == "agent.registered"]
        flamelet = next(e.payload.pid for e in registered if e.task_id == trainer.task_id)
        assert flamelet in [p.pid for p in stack.workers()]
        os.kill(flamelet, signal.SIGKILL)
        status = await wait_state(client, job_id, {"failed", "terminated", "completed"}, 20)
        assert status.state.value == "failed"
        lost = [e for e in await job_events(client, job_id) if e.type == "agent.lost"]
        assert [e.task_id for e in lost] == [trainer.task_id]
    await eventually(lambda: stack.workers() == [], timeout=15)


async def test_max_run_time_terminates_a_job_that_never_ends(stack: LocalStack):
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "sleep", "aggregator": "sleep"}, max_run_time=4
        )
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"terminated", "failed", "completed"}, 30)
        assert status.state.value == "terminated"
    await eventually(lambda: stack.workers() == [], timeout=15)


def test_up_refuses_without_rabbitmq(tmp_path: Path):
    from flame_common.embedded import free_port

    stack = LocalStack(
        tmp_path,
        {
            **os.environ,
            "FLAME_HOME": str(tmp_path),
            "FLAME_RABBIT_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        },
        "",
    )
    result = stack.flame("up")
    assert result.returncode != 0
    assert "rabbitmq-server -detached" in result.stderr
    assert not (tmp_path / "run").exists()


def test_up_status_down_with_embedded_mongo(rabbit_url: str, tmp_path: Path):
    with local_stack(None, tmp_path) as stack:
        status = stack.flame("status")
        assert status.returncode == 0, status.stdout
        for part in ("mongo", "apiserver", "controller", "notifier", "deployer"):
            assert f"{part}" in status.stdout
        assert "stopped" not in status.stdout
        pids = [stack.pid(p) for p in ("mongo", "apiserver", "controller", "notifier", "deployer")]
        config = (stack.home / "config.yaml").read_text()
        assert stack.endpoint in config and "user:" in config
        assert (stack.home / "data").is_dir() and (stack.home / "logs" / "apiserver.log").exists()
    assert not any(alive(p) for p in pids)
    after = stack.flame("status")
    assert after.returncode != 0 and "stopped" in after.stdout
