"""A job whose log cannot be replayed is quarantined (failed, with a reason); the others recover."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryJobStore
from flame_controller.mongo import MongoJobStore
from flame_controller.ports import JobStore
from flame_controller.state import evolve
from schemas import commands as c
from schemas.errors import Conflict
from schemas.events import (
    JobCreated,
    JobCreatedEvent,
    JobStateChanged,
    JobStateChangedEvent,
    TaskStatusChanged,
)
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import Bus, memory_catalog, mnist, seed_example
from tests.controller.harness import Harness, InProcess, Live, event
from tests.support.wait import eventually


async def plant_poison(store: JobStore, *, huge_run_time: bool) -> str:
    """A poison job written through the store port: a started job whose log no longer replays.

    `huge_run_time`: its `job.created` carries `maxRunTime: 1e12` (written before the edge refused
    it; its deadline overflows, and the event no longer parses). Otherwise its log starts with
    the state change instead of `job.created` (evolve raises)."""
    job_id = str(ObjectId())
    spec = JobSpec.model_validate(mnist().spec).model_copy(  # model_copy does not validate
        update={"id": job_id, "user_id": "alice", "max_run_time": 10**12 if huge_run_time else 60}
    )
    created = JobCreatedEvent(
        payload=JobCreated(user_id="alice", spec=spec, task_count=0),
        job_id=job_id,
        source="test",
        seq=1,
    )
    started = JobStateChangedEvent(
        payload=JobStateChanged(from_state=JobState.READY, to_state=JobState.STARTING),
        job_id=job_id,
        source="test",
        seq=2 if huge_run_time else 1,
    )
    log = [created, started] if huge_run_time else [started]
    await store.create(evolve(None, created), log, [], {})
    return job_id


async def _make_started_job(h: Harness) -> str:
    spec = JobSpec.model_validate(mnist().spec)
    result = (await h.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()
    assert isinstance(result, dict)
    job_id = str(result["id"])
    (await h.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    return job_id


async def _job(h: Harness, job_id: str) -> tuple[str, str]:
    job = await h.records.job(job_id)
    assert job is not None
    return job.state, job.reason


async def _is(h: Harness, job_id: str, state: str) -> bool:
    return (await _job(h, job_id))[0] == state


async def _assert_recovered(h: Harness, poison: str, good: str) -> None:
    """The poison job failed with its reason and takes no more commands; the good one lives on."""
    await eventually(lambda: _is(h, poison, "failed"))
    job = await h.records.job(poison)
    assert job is not None and job.deadline_at is None and job.ended_at is not None
    assert job.reason.startswith("quarantined: event ") and "cannot be replayed" in job.reason
    reply = await h.call(c.StopJob(user_id="alice", job_id=poison))
    with pytest.raises(Conflict, match=f"job {poison} is quarantined"):
        reply.unwrap()
    for task in await h.records.tasks(good):
        running = TaskStatusChanged(state=JobState.RUNNING)
        await h.publish(event("task.status_changed", running, job_id=good, task_id=task.task_id))
    await eventually(lambda: _is(h, good, "running"))


@pytest.mark.parametrize("huge_run_time", [False, True], ids=["evolve-raises", "maxRunTime-1e12"])
async def test_recovery_quarantines_a_poison_job_and_recovers_the_others(
    tmp_path: Any, huge_run_time: bool
) -> None:
    settings = FlameSettings(home=tmp_path, namespace="memory", log_json=False, tick_seconds=0.05)
    first = InProcess(settings, memory_catalog(mnist()))
    good = await _make_started_job(first)
    poison = await plant_poison(first.store, huge_run_time=huge_run_time)

    restarted = InProcess(settings, first.catalog)  # a new controller on the same store
    store: MemoryJobStore = first.store
    restarted.store = restarted.records = store
    restarted.controller.store = store
    async with restarted.running():
        await restarted.controller.recover(await store.open_jobs())
        assert poison not in await store.open_jobs()
        await _assert_recovered(restarted, poison, good)


@pytest.mark.integration
async def test_controller_restarts_past_a_poison_job(
    settings: FlameSettings, db: None, bus: Bus
) -> None:
    """On RabbitMQ and nx-27017: the job of the OverflowError report, planted in the store (not
    through the controller, which now refuses it), does not stop the next start; the running job
    carries on."""
    await seed_example(mnist())
    async with Live(settings, bus).running() as h:
        good = await _make_started_job(h)
        poison = await plant_poison(MongoJobStore(settings.stop_grace_seconds), huge_run_time=True)
    async with Live(settings, bus).running() as h:
        await _assert_recovered(h, poison, good)
