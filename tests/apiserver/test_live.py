"""The app on its real services (nx-27017 + RabbitMQ): resources, reads and events end to end.

The other apiserver tests run on the in-memory adapters; the adapters' own contract suites run on
both. This checks the wiring of `services.open_services`: Beanie documents, the broker publisher.
"""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest

from flame_common.documents import CodeDoc, DesignDoc, JobDoc, TaskDoc
from schemas.design import DesignSchema
from schemas.events import RESOURCE_EVENTS, ComputeRegisteredEvent
from schemas.job import JobSpec
from schemas.task_config import JobRef, TaskConfig
from tests.apiserver.conftest import MNIST_CODE, example, multipart_parts
from tests.support.tap import EventTap
from tests.support.zips import make_zip

pytestmark = pytest.mark.integration

U = "alice"
COMPUTE = {"computeId": "c1", "region": "default/us", "apiKey": "secret", "adminId": "ops"}


async def test_resources_reads_and_events(app_client: httpx.AsyncClient, tap: EventTap) -> None:
    assert (await app_client.post(f"/users/{U}/designs", json={"id": "mnist"})).status_code == 201
    schema = example("mnist", "schema.json")
    r = await app_client.post(f"/users/{U}/designs/mnist/schema", json=schema)
    assert r.json()["revision"] == 1
    code = {"fileData": ("m.zip", make_zip(MNIST_CODE), "application/zip")}
    r = await app_client.post(f"/users/{U}/designs/mnist/code", files=code)
    assert r.status_code == 201 and r.json()["revision"] == 1
    stored = await DesignDoc.find_one({"user_id": U, "design_id": "mnist"})
    assert stored is not None and (stored.schema_revision, stored.code_revision) == (1, 1)
    assert await CodeDoc.find({"design_id": "mnist"}).count() == 1

    first = await app_client.post("/computes", json=COMPUTE)
    again = await app_client.post("/computes", json={**COMPUTE, "region": "default/eu"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["registeredAt"] == first.json()["registeredAt"]
    dataset = {"url": "file:///a", "dataFormat": "npy", "realm": "default/eu", "isPublic": False}
    dataset_id = (await app_client.post(f"/users/{U}/datasets", json=dataset)).json()
    placed = (await app_client.get(f"/users/{U}/datasets/{dataset_id}")).json()
    assert (placed["realm"], placed["computeId"]) == ("default/eu/c1", "c1")

    spec = JobSpec(name="job", design_id="mnist", backend="mqtt", code_revision=1)
    await JobDoc(job_id="j1", user_id=U, name="job", design_id="mnist", spec=spec.wire()).insert()
    config = TaskConfig(
        backend="mqtt",
        job=JobRef(id="j1", name="job"),
        role="trainer",
        channels=DesignSchema.model_validate(schema).channels,
    )
    await TaskDoc(
        job_id="j1", task_id="t1", role="trainer", key="k" * 32, compute_id="c1",
        config=config.to_wire(),
    ).insert()  # fmt: skip
    tasks = (await app_client.get(f"/users/{U}/jobs/j1/tasks")).json()
    assert [(t["taskId"], t["key"]) for t in tasks] == [("t1", "hidden by system")]
    manifest = await app_client.get("/jobs/j1/t1/task", headers={"X-Flame-Task-Key": "k" * 32})
    parts = multipart_parts(manifest)
    assert json.loads(parts["config"][1])["taskid"] == "t1"
    assert zipfile.ZipFile(io.BytesIO(parts["code.zip"][1])).namelist() == [
        "trainer/main.py",
        "trainer/util.py",
    ]
    jobs = await app_client.get("/jobs/c1", headers={"X-API-KEY": "secret"})
    assert [j["id"] for j in jobs.json()] == ["j1"]
    r = await app_client.delete(f"/users/{U}/designs/mnist")
    assert r.status_code == 409  # a job uses it

    for event_type in ("design.created", "schema.updated", "code.uploaded", "dataset.created"):
        [event] = await tap.wait_count(RESOURCE_EVENTS[event_type], 1)
        assert event.source == "apiserver"
    await tap.wait_for(ComputeRegisteredEvent)
