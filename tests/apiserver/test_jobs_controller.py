"""Jobs end to end through the REST API with the real controller (in-process, real brokers)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flame_common.settings import FlameSettings
from tests.apiserver.conftest import MNIST_CODE, example, multipart_parts, sse_frames
from tests.support.wait import eventually
from tests.support.zips import make_zip

pytestmark = pytest.mark.integration

U = "alice"
KEY = {"X-API-KEY": "k-default"}


@pytest.fixture
async def controller(settings: FlameSettings) -> AsyncIterator[None]:
    from flame_controller.app import running_controller

    async with running_controller(settings):
        yield


async def _mnist_design(client: httpx.AsyncClient) -> str:
    """Design, schema, code (revision 1), compute `default`; returns a public dataset id."""
    body = {"computeId": "default", "region": "default/us", "apiKey": "k-default", "adminId": "ops"}
    assert (await client.post("/computes", json=body)).status_code == 201
    assert (await client.post(f"/users/{U}/designs", json={"id": "mnist"})).status_code == 201
    schema = example("mnist", "schema.json")
    assert (await client.post(f"/users/{U}/designs/mnist/schema", json=schema)).status_code == 201
    files = {"fileData": ("mnist.zip", make_zip(MNIST_CODE))}
    assert (await client.post(f"/users/{U}/designs/mnist/code", files=files)).status_code == 201
    r = await client.post(f"/users/{U}/datasets", json=example("mnist", "dataset.json"))
    assert r.status_code == 201
    return str(r.json())


def _job(dataset_id: str, **extra: Any) -> dict[str, Any]:
    job = example("mnist", "job.json")
    return {
        **{k: v for k, v in job.items() if k not in ("dataSpecPath", "modelSpecPath")},
        "dataSpec": [{"role": "trainer", "datasetGroups": {"us": [dataset_id]}}],
        "modelSpec": example("mnist", "modelSpec.json"),
        **extra,
    }


async def _wait_state(client: httpx.AsyncClient, job_id: str, state: str) -> None:
    async def reached() -> bool:
        status = (await client.get(f"/users/{U}/jobs/{job_id}/status")).json()
        return bool(status["state"] == state)

    await eventually(reached, timeout=20, what=f"job {job_id} {state}")


async def test_job_lifecycle_with_controller(
    app_client: httpx.AsyncClient, controller: None
) -> None:
    dataset_id = await _mnist_design(app_client)
    r = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json()["state"] == "ready"
    assert [j["id"] for j in (await app_client.get(f"/users/{U}/jobs")).json()] == [job_id]
    spec = (await app_client.get(f"/users/{U}/jobs/{job_id}")).json()
    assert spec["codeRevision"] == 1 and spec["userId"] == U and spec["maxRunTime"] == 1800

    tasks = (await app_client.get(f"/users/{U}/jobs/{job_id}/tasks")).json()
    assert sorted(t["role"] for t in tasks) == ["aggregator", "trainer"]
    assert {t["key"] for t in tasks} == {"hidden by system"}

    # a newer code revision does not change what the job's agents download
    newer = make_zip({**MNIST_CODE, "trainer/main.py": b"print('v2')\n"})
    await app_client.post(f"/users/{U}/designs/mnist/code", files={"fileData": ("m.zip", newer)})
    keys = (
        await app_client.get(f"/computes/default/deployments/{job_id}/config", headers=KEY)
    ).json()
    assert sorted(keys["agentKVs"]) == sorted(t["taskId"] for t in tasks)
    trainer = next(t for t in tasks if t["role"] == "trainer")
    manifest = await app_client.get(
        f"/jobs/{job_id}/{trainer['taskId']}/task/",
        headers={"X-Flame-Task-Key": keys["agentKVs"][trainer["taskId"]]},
    )
    assert manifest.status_code == 200
    parts = multipart_parts(manifest)
    code = zipfile.ZipFile(io.BytesIO(parts["code.zip"][1]))
    assert code.read("trainer/main.py") == MNIST_CODE["trainer/main.py"]
    assert all(n.startswith("trainer/") for n in code.namelist())
    config = json.loads(parts["config"][1])
    assert (
        config["dataset"] == example("mnist", "dataset.json")["url"] and config["role"] == "trainer"
    )
    wrong = await app_client.get(
        f"/jobs/{job_id}/{trainer['taskId']}/task", headers={"X-Flame-Task-Key": "nope"}
    )
    assert wrong.status_code == 401

    # design in use: refused without force
    assert (await app_client.delete(f"/users/{U}/designs/mnist")).status_code == 409

    r = await app_client.put(
        f"/users/{U}/jobs/{job_id}/status", json={"id": job_id, "state": "starting"}
    )
    assert r.status_code == 200, r.text
    for task in tasks:
        r = await app_client.put(
            f"/jobs/{job_id}/{task['taskId']}/task/status",
            json={"state": "running"},
            headers={"X-Flame-Task-Key": keys["agentKVs"][task["taskId"]]},
        )
        assert r.status_code == 200, r.text
    await _wait_state(app_client, job_id, "running")
    for task in tasks:
        r = await app_client.put(
            f"/jobs/{job_id}/{task['taskId']}/task/status",
            json={"state": "completed", "log": "ok"},
            headers={"X-Flame-Task-Key": keys["agentKVs"][task["taskId"]]},
        )
        assert r.status_code == 200, r.text
    await _wait_state(app_client, job_id, "completed")

    events = (await app_client.get(f"/users/{U}/jobs/{job_id}/events")).json()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert events[0]["type"] == "job.created"
    states = [e["payload"]["to_state"] for e in events if e["type"] == "job.state_changed"]
    assert states[0] == "starting" and states[-1] == "completed"
    stream = await app_client.get(f"/users/{U}/jobs/{job_id}/events/stream")  # ends: job is done
    assert [int(f["id"]) for f in sse_frames(stream.text)][: len(seqs)] == seqs

    assert (await app_client.delete(f"/users/{U}/jobs/{job_id}")).status_code == 200
    assert (await app_client.get(f"/users/{U}/jobs/{job_id}")).status_code == 404
    assert (await app_client.get(f"/users/{U}/jobs")).json() == []


async def test_controller_refusals(app_client: httpx.AsyncClient, controller: None) -> None:
    dataset_id = await _mnist_design(app_client)
    job_id = (await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id))).json()["id"]

    r = await app_client.put(f"/users/{U}/jobs/{job_id}/status", json={"state": "stopping"})
    assert r.status_code == 409, r.text  # nothing to stop: an illegal transition
    assert (await app_client.get(f"/users/{U}/jobs/{job_id}/status")).json()["state"] == "ready"

    r = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id, designId="ghost"))
    assert r.status_code == 404
    r = await app_client.put(f"/users/{U}/jobs/{job_id}", json=_job(dataset_id, name="renamed"))
    assert r.status_code == 200 and r.json()["state"] == "ready"
    assert (await app_client.get(f"/users/{U}/jobs/{job_id}")).json()["name"] == "renamed"

    r = await app_client.put(f"/users/{U}/jobs/{job_id}/status", json={"state": "starting"})
    assert r.status_code == 200
    r = await app_client.delete(f"/users/{U}/jobs/{job_id}")
    assert r.status_code == 409  # active jobs cannot be deleted
    r = await app_client.put(f"/users/{U}/jobs/{job_id}/status", json={"state": "stopping"})
    assert r.status_code == 200
    await _wait_state(app_client, job_id, "terminated")
    assert (await app_client.get("/users/bob/jobs")).json() == []
    assert (await app_client.delete(f"/users/bob/jobs/{job_id}")).status_code == 404


async def test_a_model_spec_with_unknown_providers_creates_nothing(
    app_client: httpx.AsyncClient, controller: None
) -> None:
    dataset_id = await _mnist_design(app_client)
    model = example("mnist", "modelSpec.json")
    bad = {
        **model,
        "optimizer": {"sort": "fedavgg"},
        "privacy": {"sort": "dp", "kwargs": {"clip_threshold": -1, "noise_factor": 0.1}},
    }
    r = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id, modelSpec=bad))
    assert r.status_code == 422, r.text  # well-formed, semantically invalid
    message = r.json()["message"]
    assert "unknown optimizer sort 'fedavgg'" in message
    assert "privacy 'dp': bad kwargs: clip_threshold" in message
    assert (await app_client.get(f"/users/{U}/jobs")).json() == []
    good = {**model, "datasampler": {"sort": "fedbalancer"}}
    r = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id, modelSpec=good))
    assert r.status_code == 422 and "needs hyperparameter(s) epochs" in r.json()["message"]
