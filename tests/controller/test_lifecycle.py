"""Controller lifecycle, stop, maxRunTime, event log, bad input: in process on the memory adapters;
the main flows also on the live services (RabbitMQ + nx-27017)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_controller.app import Stores, running_controller
from flame_controller.expansion import DatasetRef
from flame_controller.memory import MemoryJobStore
from flame_controller.ports import Design, LoggedEvent, TaskRecord
from schemas import commands as c
from schemas.errors import Conflict, Forbidden, Invalid, NotFound
from schemas.events import (
    AgentRegistered,
    TaskAssignedEvent,
    TaskStatusChanged,
    TaskStopRequestedEvent,
    WorkerCreated,
    WorkerReleasedEvent,
    WorkerRequestedEvent,
)
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import Bus, memory_catalog, mnist, seed_example
from tests.controller.harness import Harness, InProcess, Live, event
from tests.support.wait import eventually


@pytest.fixture
def memory_settings(tmp_path: Any) -> FlameSettings:
    return FlameSettings(
        home=tmp_path / "flame-home",
        namespace="memory",
        log_json=False,
        stop_grace_seconds=2.0,
        tick_seconds=0.1,
        controller_store="memory",
    )


@pytest.fixture
async def in_process(memory_settings: FlameSettings) -> AsyncIterator[InProcess]:
    async with InProcess(memory_settings, memory_catalog(mnist())).running() as h:
        yield h


@pytest.fixture
async def live(settings: FlameSettings, db: None, bus: Bus) -> AsyncIterator[Live]:
    await seed_example(mnist())
    async with Live(settings, bus).running() as h:
        yield h


@pytest.fixture(params=["in_process", pytest.param("live", marks=pytest.mark.integration)])
def h(request: pytest.FixtureRequest) -> Harness:
    """The same test in process and on the live services."""
    harness: Harness = request.getfixturevalue(request.param)
    return harness


def _spec(**changes: Any) -> JobSpec:
    return JobSpec.model_validate({**mnist().spec, **changes})


async def _create(h: Harness, **changes: Any) -> str:
    result = (await h.call(c.CreateJob(user_id="alice", spec=_spec(**changes)))).unwrap()
    assert isinstance(result, dict) and result["state"] == "ready"
    return str(result["id"])


async def _tasks(h: Harness, job_id: str) -> dict[str, TaskRecord]:
    return {t.role: t for t in await h.records.tasks(job_id)}


async def _job_state(h: Harness, job_id: str) -> str:
    job = await h.records.job(job_id)
    return job.state if job else "missing"


async def _state_is(h: Harness, job_id: str, state: str) -> bool:
    return await _job_state(h, job_id) == state


async def _report(h: Harness, job_id: str, task_id: str, state: JobState) -> Any:
    payload = TaskStatusChanged(state=state)
    return await h.publish(event("task.status_changed", payload, job_id=job_id, task_id=task_id))


def _moves(log: list[LoggedEvent]) -> list[tuple[str, str]]:
    return [
        (x.event.payload.from_state.value, x.event.payload.to_state.value)
        for x in log
        if x.event.type == "job.state_changed"
    ]


def _assert_clean_log(log: list[LoggedEvent]) -> None:
    assert [x.event.seq for x in log] == list(range(1, len(log) + 1))
    ids = [x.event.id for x in log]
    assert len(set(ids)) == len(ids)


async def test_create_start_run_complete(h: Harness) -> None:
    job_id = await _create(h)
    tasks = await _tasks(h, job_id)
    assert set(tasks) == {"aggregator", "trainer"}
    assert tasks["trainer"].dataset.endswith("mnist.npz") and tasks["trainer"].key
    assert tasks["trainer"].config["taskid"] == tasks["trainer"].task_id
    agg, trn = tasks["aggregator"].task_id, tasks["trainer"].task_id

    # An agent that registers before the start is assigned when the job starts.
    early = AgentRegistered(agent_id="agent-agg")
    await h.publish(event("agent.registered", early, job_id=job_id, task_id=agg))
    await eventually(lambda: _agent_of(h, job_id, agg))
    started = (await h.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    assert isinstance(started, dict) and started["state"] == "deploying"
    requested = await h.seen.wait_count(WorkerRequestedEvent, 2, lambda e: e.job_id == job_id)
    # The mnist dataset's realm default/us/west is the region of compute-1.
    assert {e.payload.compute_id: e.payload.task_ids for e in requested} == {
        "default": [agg],
        "compute-1": [trn],
    }
    await h.seen.wait_for(TaskAssignedEvent, lambda e: e.task_id == agg)

    await h.publish(event("worker.created", WorkerCreated(compute_id="default"), job_id=job_id))
    late = AgentRegistered(agent_id="agent-trn")
    await h.publish(event("agent.registered", late, job_id=job_id, task_id=trn))
    await h.seen.wait_for(TaskAssignedEvent, lambda e: e.task_id == trn)

    running = await _report(h, job_id, agg, JobState.RUNNING)
    await h.publish(running)  # redelivered: ignored by id
    await _report(h, job_id, trn, JobState.RUNNING)
    await eventually(lambda: _state_is(h, job_id, "running"))
    await _report(h, job_id, trn, JobState.COMPLETED)
    await _report(h, job_id, trn, JobState.COMPLETED)  # a duplicate report with a new id
    await _report(h, job_id, agg, JobState.COMPLETED)
    await eventually(lambda: _state_is(h, job_id, "completed"))
    await h.seen.wait_for(WorkerReleasedEvent, lambda e: e.job_id == job_id)

    log = await h.records.log(job_id)
    _assert_clean_log(log)
    assert _moves(log) == [
        ("ready", "starting"),
        ("starting", "deploying"),
        ("deploying", "running"),
        ("running", "completed"),
    ]
    statuses = [
        (x.event.task_id, x.event.payload.state.value)
        for x in log
        if x.event.type == "task.status_changed"
    ]
    assert statuses == [(agg, "running"), (trn, "running"), (trn, "completed"), (agg, "completed")]
    assert (await _tasks(h, job_id))["trainer"].state == "completed"
    job = await h.records.job(job_id)
    assert job is not None and job.ended_at is not None and job.deadline_at is None
    await eventually(lambda: h.all_published(job_id))


async def _agent_of(h: Harness, job_id: str, task_id: str) -> str:
    return next((t.agent_id for t in await h.records.tasks(job_id) if t.task_id == task_id), "")


async def test_report_over_rpc_and_stop(h: Harness) -> None:
    job_id = await _create(h)
    tasks = await _tasks(h, job_id)
    await h.call(c.StartJob(user_id="alice", job_id=job_id))
    report = c.ReportTaskStatus(
        user_id="",
        job_id=job_id,
        task_id=tasks["trainer"].task_id,
        status={"state": "running", "log": "epoch 1"},  # type: ignore[arg-type]
    )
    assert (await h.call(report)).unwrap() == {}
    stopped = (await h.call(c.StopJob(user_id="alice", job_id=job_id))).unwrap()
    assert isinstance(stopped, dict) and stopped["state"] == "stopping"
    asked = await h.seen.wait_count(TaskStopRequestedEvent, 2, lambda e: e.job_id == job_id)
    assert {e.task_id for e in asked} == {t.task_id for t in tasks.values()}
    for t in tasks.values():
        await _report(h, job_id, t.task_id, JobState.TERMINATED)
    await eventually(lambda: _state_is(h, job_id, "terminated"))
    # The terminated report carried no log: the one reported over RPC stays.
    assert (await _tasks(h, job_id))["trainer"].log == "epoch 1"
    log = await h.records.log(job_id)
    _assert_clean_log(log)
    assert _moves(log)[-3:] == [
        ("deploying", "running"),
        ("running", "stopping"),
        ("stopping", "terminated"),
    ]


async def test_max_run_time_expiry_terminates(h: Harness) -> None:
    job_id = await _create(h, maxRunTime=1)
    await h.call(c.StartJob(user_id="alice", job_id=job_id))
    await eventually(lambda: _state_is(h, job_id, "terminated"), timeout=20)
    job = await h.records.job(job_id)
    assert job is not None and job.reason == "maxRunTime of 1 s exceeded"
    log = await h.records.log(job_id)
    _assert_clean_log(log)
    assert _moves(log)[-2:] == [("deploying", "stopping"), ("stopping", "terminated")]
    assert [x.event.type for x in log].count("task.stop_requested") == 2


async def test_bad_input_is_rejected_and_nothing_is_written(in_process: InProcess) -> None:
    h = in_process

    async def create(spec: JobSpec, user: str = "alice") -> Exception:
        with pytest.raises(Exception) as info:
            (await h.call(c.CreateJob(user_id=user, spec=spec))).unwrap()
        return info.value

    err = await create(_spec(designId="nope"))
    assert isinstance(err, NotFound) and str(err) == "design nope not found"
    err = await create(_spec(dataSpec=[{"role": "trainer", "datasetGroups": {"us": ["missing"]}}]))
    assert isinstance(err, Invalid) and str(err) == "dataset missing not found"

    # A design without code; a design whose code revision is missing.
    schema = mnist().schema.wire()
    h.catalog.add_design("alice", "nocode", Design(schema, schema_revision=1, code_revision=0))
    h.catalog.add_design("alice", "lost", Design(schema, schema_revision=1, code_revision=1))
    err = await create(_spec(designId="nocode"))
    assert isinstance(err, Invalid) and str(err) == "design nocode has no code"
    err = await create(_spec(designId="lost"))
    assert isinstance(err, Invalid) and "no code at revision 1" in str(err)

    # Another user's private dataset.
    h.catalog.add_dataset(DatasetRef("secret", "mallory", "file:///s", "default", False))
    err = await create(_spec(dataSpec=[{"role": "trainer", "datasetGroups": {"us": ["secret"]}}]))
    assert isinstance(err, Forbidden)
    assert await h.store.pending() == [] and await h.store.open_jobs() == []

    # A malformed command is a typed error too (raw bytes through the RPC handler).
    reply = await h.call_raw(b'{"kind": "job.start"}')
    assert not reply.ok and reply.error is not None and reply.error.code == "bad_request"


async def test_unknown_roles_in_channels_are_invalid(in_process: InProcess) -> None:
    h = in_process
    bad = mnist().schema.wire()
    bad["channels"][0]["pair"] = ["trainer", "ghost"]
    h.catalog.add_design("alice", "ghost", Design(bad, schema_revision=1, code_revision=1))
    h.catalog.add_code("alice", "ghost", 1, mnist().code_zip())
    with pytest.raises(Invalid, match="channel 'param-channel' names unknown role 'ghost'"):
        (await h.call(c.CreateJob(user_id="alice", spec=_spec(designId="ghost")))).unwrap()
    assert await h.store.pending() == [] and await h.store.open_jobs() == []


async def test_illegal_transitions_and_ownership(in_process: InProcess) -> None:
    h = in_process
    job_id = await _create(h)
    with pytest.raises(Conflict, match="it is ready, and ready -> stopping is not allowed"):
        (await h.call(c.StopJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(NotFound):
        (await h.call(c.StartJob(user_id="mallory", job_id=job_id))).unwrap()
    (await h.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(Conflict, match="cannot delete job"):
        (await h.call(c.DeleteJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(Conflict, match="cannot update job"):
        (await h.call(c.UpdateJob(user_id="alice", job_id=job_id, spec=_spec()))).unwrap()
    with pytest.raises(NotFound):
        (await h.call(c.StartJob(user_id="alice", job_id="0" * 24))).unwrap()


async def test_unmanaged_computes_get_no_worker_request(in_process: InProcess) -> None:
    h = in_process
    h.catalog.add_compute("compute-1", managed=False)
    job_id = await _create(h)
    await h.call(c.StartJob(user_id="alice", job_id=job_id))
    requested = h.seen.of(WorkerRequestedEvent, lambda e: e.job_id == job_id)
    assert [e.payload.compute_id for e in requested] == ["default"]


async def test_update_and_delete_cascade(in_process: InProcess) -> None:
    h = in_process
    job_id = await _create(h)
    before = await _tasks(h, job_id)
    updated = (
        await h.call(c.UpdateJob(user_id="alice", job_id=job_id, spec=_spec(maxRunTime=99)))
    ).unwrap()
    assert isinstance(updated, dict) and updated["state"] == "ready"
    after = await _tasks(h, job_id)
    assert {t.task_id for t in after.values()}.isdisjoint({t.task_id for t in before.values()})
    assert len(after) == 2  # stale tasks (config changed) removed
    assert (await h.call(c.DeleteJob(user_id="alice", job_id=job_id))).unwrap() == {}
    assert await h.records.tasks(job_id) == [] and await h.records.job(job_id) is None
    assert [x.event.type for x in await h.records.log(job_id)][-1] == "job.deleted"
    with pytest.raises(NotFound):
        (await h.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()


@pytest.mark.integration
async def test_the_services_run_on_injected_memory_stores(
    settings: FlameSettings, bus: Bus
) -> None:
    """The composition root takes the adapters it is given: consumer, outbox and RPC use them."""
    store = MemoryJobStore(settings.stop_grace_seconds)
    async with running_controller(settings, Stores(store, memory_catalog(mnist()))):
        h = Live(settings, bus)
        h.records = store
        job_id = await _create(h)
        trn = (await _tasks(h, job_id))["trainer"].task_id
        registered = AgentRegistered(agent_id="a")
        await h.publish(event("agent.registered", registered, job_id=job_id, task_id=trn))
        await eventually(lambda: _agent_of(h, job_id, trn))
        await eventually(lambda: h.all_published(job_id))  # the relay marked them in this store
    assert await store.pending() == []
