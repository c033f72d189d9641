"""Job commands to the controller (a fake in memory; RPC on the real queue), reads, 503s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue

from flame_common.bus import names
from flame_common.settings import FlameSettings
from schemas.commands import CommandReply, CreateJob, DeleteJob, StartJob, StopJob, UpdateJob
from schemas.errors import Conflict
from schemas.job import JobStatus
from schemas.states import JobState
from tests.apiserver.conftest import FakeController, MemoryStack, api_client, example

U = "alice"


def _job_body(**extra: Any) -> dict[str, Any]:
    job = example("mnist", "job.json")
    body = {k: v for k, v in job.items() if k not in ("dataSpecPath", "modelSpecPath")}
    return {**body, "modelSpec": example("mnist", "modelSpec.json"), **extra}


def _status_reply(command: Any) -> CommandReply:
    job_id = getattr(command, "job_id", "new-job")
    state = {"job.start": JobState.STARTING, "job.stop": JobState.STOPPING}.get(
        command.kind, JobState.READY
    )
    return CommandReply.success(JobStatus(id=job_id, name="mnist example", state=state).wire())


async def test_job_commands(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    fake_controller = stack.controller
    fake_controller.respond = _status_reply
    r = await api.post(f"/users/{U}/jobs", json=_job_body(userId="mallory", id="x"))
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "new-job" and r.json()["state"] == "ready"
    create = fake_controller.commands[-1]
    assert isinstance(create, CreateJob) and create.user_id == U
    assert create.spec.user_id == U and create.spec.id == ""
    assert create.spec.max_run_time == 1800 and create.spec.model_spec.selector.sort == "random"

    r = await api.put(f"/users/{U}/jobs/j9/status", json={"id": "other", "state": "starting"})
    assert r.status_code == 200 and r.json()["state"] == "starting"
    assert fake_controller.commands[-1] == StartJob(user_id=U, job_id="j9")
    r = await api.put(f"/users/{U}/jobs/j9/status/", json={"state": "stopping"})
    assert r.json()["state"] == "stopping"
    assert fake_controller.commands[-1] == StopJob(user_id=U, job_id="j9")

    r = await api.put(f"/users/{U}/jobs/j9", json=_job_body(maxRunTime=0))
    assert r.status_code == 200
    update = fake_controller.commands[-1]
    assert (
        isinstance(update, UpdateJob) and update.spec.id == "j9" and update.spec.max_run_time == 600
    )
    assert (await api.put(f"/users/{U}/jobs/j9", json=_job_body(id="j8"))).status_code == 422

    r = await api.delete(f"/users/{U}/jobs/j9")
    assert r.status_code == 200
    assert fake_controller.commands[-1] == DeleteJob(user_id=U, job_id="j9")


async def test_user_may_request_only_start_and_stop(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    fake_controller = stack.controller
    for state in ("running", "completed", "ready", "deploying"):
        r = await api.put(f"/users/{U}/jobs/j1/status", json={"state": state})
        assert r.status_code == 422, state
    r = await api.put(f"/users/{U}/jobs/j1/status", json={"state": "applying"})
    assert r.status_code == 422 and "'applying' cannot be requested" in r.json()["message"]
    assert fake_controller.commands == []


@pytest.mark.integration
async def test_controller_errors_keep_their_status(
    app_client: httpx.AsyncClient, fake_controller: FakeController
) -> None:
    fake_controller.fail_with(Conflict("job 'j1' is running; stop it first"))
    r = await app_client.delete(f"/users/{U}/jobs/j1")
    assert r.status_code == 409
    assert r.json() == {"code": "conflict", "message": "job 'j1' is running; stop it first"}
    r = await app_client.put(f"/users/{U}/jobs/j1/status", json={"state": "starting"})
    assert r.status_code == 409


async def test_bad_job_bodies_send_nothing(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    fake_controller = stack.controller
    bad = [
        (b'{"name": "x",', 400),
        (b'{"designId": "mnist", "backend": "mqtt"}', 422),  # name missing
        (b'{"name": "x", "designId": "mnist", "backend": "mqtt", "dataSpecPath": "d"}', 422),
        (b'{"name": "x", "designId": "mnist", "backend": "mqtt", "maxRunTime": -5}', 422),
    ]
    for body, status in bad:
        r = await api.post(
            f"/users/{U}/jobs", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == status, (body, r.text)
    assert fake_controller.commands == []


async def test_datasets_of_other_users(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    fake_controller = stack.controller
    fake_controller.respond = _status_reply
    await api.post("/computes", json={"computeId": "default", "region": "default/us"})
    mine = {"url": "file:///a", "dataFormat": "npy", "realm": "default", "isPublic": False}
    own_id = (await api.post(f"/users/{U}/datasets", json=mine)).json()
    bobs_private = (await api.post("/users/bob/datasets", json=mine)).json()
    bobs_public = (
        await api.post("/users/bob/datasets", json={**mine, "url": "file:///b", "isPublic": True})
    ).json()

    def spec(*ids: str) -> dict[str, Any]:
        return _job_body(dataSpec=[{"role": "trainer", "datasetGroups": {"us": list(ids)}}])

    r = await api.post(f"/users/{U}/jobs", json=spec(own_id, bobs_private))
    assert r.status_code == 403 and bobs_private in r.json()["message"]
    r = await api.post(f"/users/{U}/jobs", json=spec("0" * 24))
    assert r.status_code == 404
    r = await api.put(f"/users/{U}/jobs/j1", json=spec(bobs_private))
    assert r.status_code == 403
    assert fake_controller.commands == []
    r = await api.post(f"/users/{U}/jobs", json=spec(own_id, bobs_public))
    assert r.status_code == 201 and len(fake_controller.commands) == 1


async def test_job_reads(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    assert (await api.get(f"/users/{U}/jobs")).json() == []
    spec = {"name": "n", "designId": "mnist", "backend": "mqtt", "codeRevision": 2}
    stack.job("j1", U, design_id="mnist", spec=spec, state="running")
    stack.job("j2", "bob", name="b", spec=spec)
    listed = (await api.get(f"/users/{U}/jobs/?limit=100")).json()
    assert [(j["id"], j["state"]) for j in listed] == [("j1", "running")]
    got = (await api.get(f"/users/{U}/jobs/j1")).json()
    assert got["id"] == "j1" and got["userId"] == U and got["codeRevision"] == 2
    assert got["maxRunTime"] == 600
    assert (await api.get(f"/users/{U}/jobs/j1/status")).json()["state"] == "running"
    assert (await api.get(f"/users/{U}/jobs/j2")).status_code == 404
    assert (await api.get(f"/users/{U}/jobs/j2/status")).status_code == 404


@pytest.mark.integration
async def test_no_controller_is_a_503(app_client: httpx.AsyncClient) -> None:
    """Nobody consumes the command queue: a clear 503 at once, not a hang."""
    r = await app_client.put(f"/users/{U}/jobs/j1/status", json={"state": "starting"})
    assert r.status_code == 503
    assert r.json()["code"] == "unavailable" and "controller" in r.json()["message"]


@pytest.fixture
async def silent_controller(settings: FlameSettings) -> AsyncIterator[list[Any]]:
    """Consumes commands but never answers (a hung controller)."""
    received: list[Any] = []
    broker = RabbitBroker(settings.rabbit_url, logger=None)

    @broker.subscriber(RabbitQueue(names(settings).command_queue, auto_delete=True), no_reply=True)
    async def swallow(body: dict[str, Any]) -> None:
        received.append(body)

    await broker.start()
    yield received
    await broker.stop()


@pytest.mark.integration
async def test_rpc_timeout_is_a_503(settings: FlameSettings, silent_controller: list[Any]) -> None:
    async with api_client(settings.with_overrides(rpc_timeout=0.5)) as client:
        r = await client.put(f"/users/{U}/jobs/j1/status", json={"state": "stopping"})
        assert r.status_code == 503 and "did not answer" in r.json()["message"]
    assert len(silent_controller) == 1


@pytest.mark.integration
async def test_commands_run_concurrently(
    app_client: httpx.AsyncClient, fake_controller: FakeController
) -> None:
    fake_controller.respond = _status_reply
    results = await asyncio.gather(
        *(
            app_client.put(f"/users/{U}/jobs/j{i}/status", json={"state": "starting"})
            for i in range(8)
        )
    )
    assert sorted(r.json()["id"] for r in results) == sorted(f"j{i}" for i in range(8))
