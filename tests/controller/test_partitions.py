"""Two controllers on one namespace (RabbitMQ, nx-27017): each owns some partitions, every job has
one writer, and when one is killed with SIGKILL the other takes its partitions and ends its jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_common.documents import JobDoc, TaskDoc
from flame_common.settings import FlameSettings
from flame_common.topology import topology
from schemas import commands as c
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import Bus, ControllerProcess, job_log, mnist, wait_ready
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

JOBS_EACH = 2  # jobs of each controller's partitions


@pytest.fixture
def pair(settings: FlameSettings, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    procs = [ControllerProcess(settings, tmp_path / f"controller-{n}.log") for n in "ab"]
    yield procs
    for proc in procs:
        proc.terminate()


def owned(proc: ControllerProcess) -> set[int]:
    """The partitions a controller says it owns (its last gain, minus what it handed over)."""
    mine: set[int] = set()
    for line in proc.log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == "partitions gained":
            mine = set(record["owned"])
        elif record.get("event") == "partitions handed over":
            mine -= set(record["partitions"])
        elif record.get("event") == "partitions lost":
            mine = set()
    return mine


async def _state(job_id: str) -> str:
    doc = await JobDoc.find_one({"job_id": job_id})
    return doc.state if doc else ""


async def test_two_controllers_share_the_jobs_and_survive_one_killed(
    seeded: None,
    settings: FlameSettings,
    bus: Bus,
    pair: list[ControllerProcess],
) -> None:
    a, b = pair
    a.start()
    await wait_ready(bus)
    b.start()
    count = settings.controller_partitions

    def split() -> bool:
        ours, theirs = owned(a), owned(b)
        return len(ours) == len(theirs) == count // 2 and not ours & theirs

    await eventually(split, timeout=30, what=lambda: f"a owns {owned(a)}, b owns {owned(b)}")

    # Jobs until each controller writes JOB_EACH of them (job ids are drawn by whoever creates).
    spec = JobSpec.model_validate(mnist().spec)
    jobs: dict[str, list[str]] = {"a": [], "b": []}
    for _ in range(40):
        if min(len(v) for v in jobs.values()) >= JOBS_EACH:
            break
        job_id = str((await bus.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()["id"])
        writer = "a" if topology(settings).partition_of(job_id) in owned(a) else "b"
        jobs[writer].append(job_id)
    assert min(len(v) for v in jobs.values()) >= JOBS_EACH, jobs
    every = jobs["a"] + jobs["b"]
    tasks = {
        job_id: {t.role: t.task_id for t in await TaskDoc.find({"job_id": job_id}).to_list()}
        for job_id in every
    }
    for job_id in every:  # commands reach the job's writer, whoever takes them
        started = (await bus.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
        assert started["state"] == "deploying"
    for job_id in every:
        for task_id in tasks[job_id].values():
            await bus.report(JobState.RUNNING, job_id=job_id, task_id=task_id)
    for job_id in every:
        await eventually(lambda j=job_id: _is(j, "running"), timeout=30)

    a.kill()  # mid-run: its jobs' last reports come while nobody writes them
    for job_id in every:
        for task_id in tasks[job_id].values():
            await bus.report(JobState.COMPLETED, job_id=job_id, task_id=task_id)
    await eventually(
        lambda: owned(b) == set(range(count)), timeout=15, what=lambda: f"b owns {owned(b)}"
    )
    for job_id in every:
        await eventually(lambda j=job_id: _is(j, "completed"), timeout=30)

    for job_id in every:
        log = await job_log(job_id)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1)), job_id
        assert len({e["event_id"] for e in log}) == len(log)
        moves = [e["body"]["payload"]["to_state"] for e in log if e["type"] == "job.state_changed"]
        assert moves == ["starting", "deploying", "running", "completed"], job_id
        reports = [
            (e["body"]["task_id"], e["body"]["payload"]["state"])
            for e in log
            if e["type"] == "task.status_changed"
        ]
        assert sorted(reports) == sorted(
            (task_id, state)
            for task_id in tasks[job_id].values()
            for state in ("running", "completed")
        ), job_id
    assert b.terminate() == 0


async def _is(job_id: str, state: str) -> bool:
    return await _state(job_id) == state
