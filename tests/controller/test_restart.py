"""SIGKILL the controller process mid-job, restart it: nothing lost or duplicated, timers resume."""

from __future__ import annotations

import asyncio

import pytest

from flame_common.documents import JobDoc, TaskDoc
from schemas import commands as c
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import Bus, ControllerProcess, job_log, mnist, wait_ready
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def _state(job_id: str) -> str:
    doc = await JobDoc.find_one({"job_id": job_id})
    return doc.state if doc else ""


async def test_sigkill_restart_loses_and_duplicates_nothing(
    seeded: None, bus: Bus, process: ControllerProcess
) -> None:
    process.start()
    await wait_ready(bus)
    spec = JobSpec.model_validate(mnist().spec)
    done = (await bus.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()
    timed = (
        await bus.call(
            c.CreateJob(user_id="alice", spec=spec.model_copy(update={"max_run_time": 3}))
        )
    ).unwrap()
    assert isinstance(done, dict) and isinstance(timed, dict)
    job, slow = str(done["id"]), str(timed["id"])
    tasks = {t.role: t.task_id for t in await TaskDoc.find({"job_id": job}).to_list()}
    for job_id in (job, slow):
        await bus.call(c.StartJob(user_id="alice", job_id=job_id))
    first = await bus.report(JobState.RUNNING, job_id=job, task_id=tasks["aggregator"])
    await eventually(lambda: _is(job, "running"))

    process.kill()
    # While the controller is down its durable queue keeps these (one is a redelivery).
    for state, role in [
        (JobState.RUNNING, "trainer"),
        (JobState.COMPLETED, "trainer"),
        (JobState.COMPLETED, "aggregator"),
    ]:
        await bus.report(state, job_id=job, task_id=tasks[role])
    await bus.report(JobState.RUNNING, job_id=job, task_id=tasks["aggregator"], id=first.id)
    await asyncio.sleep(3.2)  # the slow job's maxRunTime passes while nobody is watching

    process.start()
    await eventually(lambda: _is(job, "completed"), timeout=30)
    await eventually(lambda: _is(slow, "terminated"), timeout=30)
    slow_doc = await JobDoc.find_one({"job_id": slow})
    assert slow_doc is not None and slow_doc.reason == "maxRunTime of 3 s exceeded"

    for job_id in (job, slow):
        log = await job_log(job_id)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        assert len({e["event_id"] for e in log}) == len(log)
    log = await job_log(job)
    statuses = [
        (e["body"]["task_id"], e["body"]["payload"]["state"])
        for e in log
        if e["type"] == "task.status_changed"
    ]
    assert statuses == [
        (tasks["aggregator"], "running"),
        (tasks["trainer"], "running"),
        (tasks["trainer"], "completed"),
        (tasks["aggregator"], "completed"),
    ]
    moves = [e["body"]["payload"]["to_state"] for e in log if e["type"] == "job.state_changed"]
    assert moves == ["starting", "deploying", "running", "completed"]
    assert process.terminate() == 0  # graceful SIGTERM


async def _is(job_id: str, state: str) -> bool:
    return await _state(job_id) == state
