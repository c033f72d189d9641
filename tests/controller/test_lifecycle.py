"""Controller on real RabbitMQ + nx-27017: lifecycle, stop, maxRunTime, event log, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flame_common.documents import EventDoc, JobDoc, TaskDoc
from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from schemas import commands as c
from schemas.errors import Conflict, Forbidden, Invalid, NotFound
from schemas.job import JobSpec
from tests.controller.conftest import MNIST_DATASET, Bus, job_log, mnist, seed_example, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def controller(settings: FlameSettings, db: None, bus: Bus) -> AsyncIterator[None]:
    await seed_example(mnist())
    async with running_controller(settings):
        yield


def _spec(**changes: Any) -> JobSpec:
    data = {**mnist().spec, **changes}
    return JobSpec.model_validate(data)


async def _create(bus: Bus, **changes: Any) -> str:
    reply = await bus.call(c.CreateJob(user_id="alice", spec=_spec(**changes)))
    result = reply.unwrap()
    assert isinstance(result, dict) and result["state"] == "ready"
    return str(result["id"])


async def _tasks(job_id: str) -> dict[str, TaskDoc]:
    docs = await TaskDoc.find({"job_id": job_id}).to_list()
    return {d.role: d for d in docs}


async def _job_state(job_id: str) -> str:
    doc = await JobDoc.find_one({"job_id": job_id})
    return doc.state if doc else "missing"


async def _state_is(job_id: str, state: str) -> bool:
    return await _job_state(job_id) == state


async def _report(bus: Bus, job_id: str, task_id: str, state: str, **envelope: Any) -> Any:
    return await bus.publish(
        "task.status_changed", {"state": state}, job_id=job_id, task_id=task_id, **envelope
    )


def _moves(log: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["body"]["payload"]["from_state"], e["body"]["payload"]["to_state"])
        for e in log
        if e["type"] == "job.state_changed"
    ]


def _assert_clean_log(log: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert [e["body"]["seq"] for e in log] == [e["seq"] for e in log]
    ids = [e["event_id"] for e in log]
    assert len(set(ids)) == len(ids)


async def test_create_start_run_complete(controller: None, bus: Bus) -> None:
    job_id = await _create(bus)
    tasks = await _tasks(job_id)
    assert set(tasks) == {"aggregator", "trainer"}
    assert tasks["trainer"].dataset.endswith("mnist.npz") and tasks["trainer"].key
    assert tasks["trainer"].config["taskid"] == tasks["trainer"].task_id
    agg, trn = tasks["aggregator"].task_id, tasks["trainer"].task_id

    # An agent that registers before the start is assigned when the job starts.
    await bus.publish("agent.registered", {"agent_id": "agent-agg"}, job_id=job_id, task_id=agg)
    await wait_until(lambda: _agent_of(job_id, agg))
    started = (await bus.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    assert isinstance(started, dict) and started["state"] == "deploying"
    requested = await bus.wait_for(lambda e: e.type == "worker.requested" and e.job_id == job_id, 2)
    # The mnist dataset's realm default/us/west is the region of compute-1.
    assert {e.payload.compute_id: e.payload.task_ids for e in requested} == {
        "default": [agg],
        "compute-1": [trn],
    }
    await bus.wait_for(lambda e: e.type == "task.assigned" and e.task_id == agg)

    await bus.publish("worker.created", {"compute_id": "default"}, job_id=job_id)
    await bus.publish("agent.registered", {"agent_id": "agent-trn"}, job_id=job_id, task_id=trn)
    await bus.wait_for(lambda e: e.type == "task.assigned" and e.task_id == trn)

    running = await _report(bus, job_id, agg, "running")
    await _report(bus, job_id, agg, "running", id=running.id)  # redelivered: ignored by id
    await _report(bus, job_id, trn, "running")
    await wait_until(lambda: _state_is(job_id, "running"))
    await _report(bus, job_id, trn, "completed")
    await _report(bus, job_id, trn, "completed")  # a duplicate report with a new id
    await _report(bus, job_id, agg, "completed")
    await wait_until(lambda: _state_is(job_id, "completed"))
    await bus.wait_for(lambda e: e.type == "worker.released" and e.job_id == job_id)

    log = await job_log(job_id)
    _assert_clean_log(log)
    assert _moves(log) == [
        ("ready", "starting"),
        ("starting", "deploying"),
        ("deploying", "running"),
        ("running", "completed"),
    ]
    statuses = [
        (e["body"]["task_id"], e["body"]["payload"]["state"])
        for e in log
        if e["type"] == "task.status_changed"
    ]
    assert statuses == [(agg, "running"), (trn, "running"), (trn, "completed"), (agg, "completed")]
    assert (await _tasks(job_id))["trainer"].state == "completed"
    job = await JobDoc.find_one({"job_id": job_id})
    assert job is not None and job.ended_at is not None and job.deadline_at is None
    await wait_until(lambda: _all_published(job_id))


async def _agent_of(job_id: str, task_id: str) -> str:
    doc = await TaskDoc.find_one({"job_id": job_id, "task_id": task_id})
    return doc.agent_id if doc else ""


async def _all_published(job_id: str) -> bool:
    return await EventDoc.find({"job_id": job_id, "published": False}).count() == 0


async def test_report_over_rpc_and_stop(controller: None, bus: Bus) -> None:
    job_id = await _create(bus)
    tasks = await _tasks(job_id)
    await bus.call(c.StartJob(user_id="alice", job_id=job_id))
    report = c.ReportTaskStatus(
        user_id="",
        job_id=job_id,
        task_id=tasks["trainer"].task_id,
        status={"state": "running", "log": "epoch 1"},  # type: ignore[arg-type]
    )
    assert (await bus.call(report)).unwrap() == {}
    stopped = (await bus.call(c.StopJob(user_id="alice", job_id=job_id))).unwrap()
    assert isinstance(stopped, dict) and stopped["state"] == "stopping"
    asked = await bus.wait_for(lambda e: e.type == "task.stop_requested" and e.job_id == job_id, 2)
    assert {e.task_id for e in asked} == {t.task_id for t in tasks.values()}
    for t in tasks.values():
        await _report(bus, job_id, t.task_id, "terminated")
    await wait_until(lambda: _state_is(job_id, "terminated"))
    # The terminated report carried no log: the one reported over RPC stays.
    assert (await _tasks(job_id))["trainer"].log == "epoch 1"
    log = await job_log(job_id)
    _assert_clean_log(log)
    assert _moves(log)[-3:] == [
        ("deploying", "running"),
        ("running", "stopping"),
        ("stopping", "terminated"),
    ]


async def test_max_run_time_expiry_terminates(controller: None, bus: Bus) -> None:
    job_id = await _create(bus, maxRunTime=1)
    await bus.call(c.StartJob(user_id="alice", job_id=job_id))
    await wait_until(lambda: _state_is(job_id, "terminated"), timeout=20)
    job = await JobDoc.find_one({"job_id": job_id})
    assert job is not None and job.reason == "maxRunTime of 1 s exceeded"
    log = await job_log(job_id)
    _assert_clean_log(log)
    assert _moves(log)[-2:] == [("deploying", "stopping"), ("stopping", "terminated")]
    assert [e["type"] for e in log].count("task.stop_requested") == 2


async def _empty_db() -> None:
    for doc in (JobDoc, TaskDoc, EventDoc):
        assert await doc.get_pymongo_collection().count_documents({}) == 0


async def test_bad_input_is_rejected_and_nothing_is_written(controller: None, bus: Bus) -> None:
    async def create(spec: JobSpec, user: str = "alice") -> Exception:
        with pytest.raises(Exception) as info:
            (await bus.call(c.CreateJob(user_id=user, spec=spec))).unwrap()
        return info.value

    err = await create(_spec(designId="nope"))
    assert isinstance(err, NotFound) and str(err) == "design nope not found"
    err = await create(_spec(dataSpec=[{"role": "trainer", "datasetGroups": {"us": ["missing"]}}]))
    assert isinstance(err, Invalid) and str(err) == "dataset missing not found"

    # A schema whose channel names an unknown role; a design without code.
    from flame_common.documents import DatasetDoc, DesignDoc

    bad = mnist().schema.wire()
    bad["channels"][0]["pair"] = ["trainer", "ghost"]
    await DesignDoc(
        user_id="alice", design_id="broken", schema=bad, schema_revision=1, code_revision=1
    ).insert()
    await DesignDoc(
        user_id="alice", design_id="nocode", schema=mnist().schema.wire(), schema_revision=1
    ).insert()
    err = await create(_spec(designId="nocode"))
    assert isinstance(err, Invalid) and str(err) == "design nocode has no code"
    err = await create(_spec(designId="broken"))
    assert isinstance(err, Invalid) and "no code at revision 1" in str(err)

    # Another user's private dataset.
    await DatasetDoc(
        dataset_id="secret", user_id="mallory", url="file:///s", data_format="npy", realm="default"
    ).insert()
    err = await create(_spec(dataSpec=[{"role": "trainer", "datasetGroups": {"us": ["secret"]}}]))
    assert isinstance(err, Forbidden)
    await _empty_db()

    # A malformed command is a typed error too.
    msg = await bus.broker.request(
        b'{"kind": "job.start"}', queue=f"{bus.settings.namespace}.controller.commands", timeout=10
    )
    from schemas.commands import CommandReply

    reply = CommandReply.model_validate_json(msg.body)
    assert not reply.ok and reply.error is not None and reply.error.code == "bad_request"


async def test_unknown_roles_in_channels_are_invalid(controller: None, bus: Bus) -> None:
    from flame_common.documents import CodeDoc, DesignDoc

    bad = mnist().schema.wire()
    bad["channels"][0]["pair"] = ["trainer", "ghost"]
    await DesignDoc(
        user_id="alice", design_id="ghost", schema=bad, schema_revision=1, code_revision=1
    ).insert()
    data = mnist().code_zip()
    await CodeDoc(
        user_id="alice",
        design_id="ghost",
        revision=1,
        file_name="c.zip",
        data=data,
        size=len(data),
        sha256="-",
    ).insert()
    with pytest.raises(Invalid, match="channel 'param-channel' names unknown role 'ghost'"):
        (await bus.call(c.CreateJob(user_id="alice", spec=_spec(designId="ghost")))).unwrap()
    await _empty_db()


async def test_illegal_transitions_and_ownership(controller: None, bus: Bus) -> None:
    job_id = await _create(bus)
    with pytest.raises(Conflict, match="it is ready, and ready -> stopping is not allowed"):
        (await bus.call(c.StopJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(NotFound):
        (await bus.call(c.StartJob(user_id="mallory", job_id=job_id))).unwrap()
    (await bus.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(Conflict, match="cannot delete job"):
        (await bus.call(c.DeleteJob(user_id="alice", job_id=job_id))).unwrap()
    with pytest.raises(Conflict, match="cannot update job"):
        (await bus.call(c.UpdateJob(user_id="alice", job_id=job_id, spec=_spec()))).unwrap()
    with pytest.raises(NotFound):
        (await bus.call(c.StartJob(user_id="alice", job_id="0" * 24))).unwrap()


async def test_update_and_delete_cascade(controller: None, bus: Bus) -> None:
    job_id = await _create(bus)
    before = await _tasks(job_id)
    updated = (
        await bus.call(c.UpdateJob(user_id="alice", job_id=job_id, spec=_spec(maxRunTime=99)))
    ).unwrap()
    assert isinstance(updated, dict) and updated["state"] == "ready"
    after = await _tasks(job_id)
    assert {t.task_id for t in after.values()}.isdisjoint({t.task_id for t in before.values()})
    assert len(after) == 2  # stale tasks (config changed) removed
    assert (await bus.call(c.DeleteJob(user_id="alice", job_id=job_id))).unwrap() == {}
    assert await TaskDoc.find({"job_id": job_id}).count() == 0
    assert await JobDoc.find_one({"job_id": job_id}) is None
    with pytest.raises(NotFound):
        (await bus.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    assert MNIST_DATASET  # the dataset itself is untouched by job deletion
