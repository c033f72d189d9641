"""Task reads and the agent endpoints: key-checked manifests (config + role code), status reports.

The job and task projections are put in the memory read side the way the controller writes
them (the apiserver only reads them); status reports go to the fake controller.
"""

from __future__ import annotations

import io
import json
import zipfile

import httpx

from schemas.commands import ReportTaskStatus
from schemas.design import DesignSchema
from schemas.errors import NotFound
from schemas.job import JobSpec
from schemas.task_config import JobRef, TaskConfig
from tests.apiserver.conftest import MNIST_CODE, MemoryStack, example, multipart_parts
from tests.support.zips import make_zip

U = "alice"
KEYS = {"agg": "K" * 32, "trn": "k" * 32}
TRN = {"X-Flame-Task-Key": KEYS["trn"]}


async def _controller_built_job(client: httpx.AsyncClient, stack: MemoryStack) -> None:
    """Design with two code revisions; a job pinned to revision 1 with two tasks."""
    await client.post(f"/users/{U}/designs", json={"id": "mnist"})
    schema = example("mnist", "schema.json")
    await client.post(f"/users/{U}/designs/mnist/schema", json=schema)
    v1 = make_zip({**MNIST_CODE, "lib/shared.py": b"SHARED = 1\n"})
    await client.post(f"/users/{U}/designs/mnist/code", files={"fileData": ("m.zip", v1)})
    v2 = make_zip({"trainer/main.py": b"print('v2')\n", "aggregator/main.py": b"v2\n"})
    await client.post(f"/users/{U}/designs/mnist/code", files={"fileData": ("m.zip", v2)})

    spec = JobSpec(
        name="job", design_id="mnist", backend="mqtt", code_revision=1, schema_revision=1
    )
    stack.job("j1", U, name="job", design_id="mnist", spec=spec.wire())
    channels = DesignSchema.model_validate(schema).channels
    for task_id, role in (("agg", "aggregator"), ("trn", "trainer")):
        config = TaskConfig(
            backend="mqtt",
            job=JobRef(id="j1", name="mnist"),
            role=role,
            channels=channels,
            group_association={"param-channel": "us"},
            max_run_time=600,
            dataset="file:///d.npz" if role == "trainer" else "",
        )
        stack.task(
            "j1", task_id, role, KEYS[task_id], config=config.to_wire(),
            group_association={"param-channel": "us"}, compute_id="default",
        )  # fmt: skip


async def test_task_manifest(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _controller_built_job(api, stack)
    r = await api.get("/jobs/j1/trn/task/", headers=TRN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(r)
    assert sorted(parts) == ["code.zip", "config"]

    config = json.loads(parts["config"][1])
    assert config["role"] == "trainer" and config["taskid"] == "trn"
    assert config["realm"] == "" and config["dataset"] == "file:///d.npz"
    assert config["job"] == {"id": "j1", "name": "mnist"}
    assert config["channels"][0]["funcTags"]["trainer"] == ["fetch", "upload"]

    code = zipfile.ZipFile(io.BytesIO(parts["code.zip"][1]))
    assert sorted(code.namelist()) == ["trainer/main.py", "trainer/util.py"]
    assert code.read("trainer/main.py") == MNIST_CODE["trainer/main.py"]  # pinned revision 1

    r = await api.get("/jobs/j1/agg/task", headers={"X-Flame-Task-Key": KEYS["agg"]})
    agg = multipart_parts(r)
    assert zipfile.ZipFile(io.BytesIO(agg["code.zip"][1])).namelist() == ["aggregator/main.py"]
    assert "dataset" not in json.loads(agg["config"][1])


async def test_task_manifest_key_checks(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _controller_built_job(api, stack)
    missing = await api.get("/jobs/j1/trn/task")
    assert missing.status_code == 401 and "X-Flame-Task-Key" in missing.json()["message"]
    empty = await api.get("/jobs/j1/trn/task", headers={"X-Flame-Task-Key": ""})
    assert empty.status_code == 401
    wrong = await api.get("/jobs/j1/trn/task", headers={"X-Flame-Task-Key": KEYS["agg"]})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    odd = await api.get("/jobs/j1/trn/task", headers={"X-Flame-Task-Key": "\u00e9t\u00e9".encode()})
    assert odd.status_code == 401
    assert (await api.get("/jobs/j1/ghost/task", headers=TRN)).status_code == 404


async def test_task_keys_in_urls_are_refused(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    """Flame's `?key=` form is refused even with the right key: URLs end up in logs."""
    await _controller_built_job(api, stack)
    r = await api.get(f"/jobs/j1/trn/task?key={KEYS['trn']}")
    assert r.status_code == 400 and "X-Flame-Task-Key" in r.json()["message"]
    assert KEYS["trn"] not in r.text
    r = await api.put(f"/jobs/j1/trn/task/status?key={KEYS['trn']}", json={"state": "failed"})
    assert r.status_code == 400
    assert stack.controller.commands == []


async def test_task_manifest_without_role_code(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _controller_built_job(api, stack)
    stack.task("j1", "odd", "coordinator", "c" * 32)
    r = await api.get("/jobs/j1/odd/task", headers={"X-Flame-Task-Key": "c" * 32})
    assert r.status_code == 404 and "coordinator" in r.json()["message"]


async def test_task_reads_hide_keys(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _controller_built_job(api, stack)
    tasks = (await api.get(f"/users/{U}/jobs/j1/tasks/?limit=100&generic=false")).json()
    assert [t["taskId"] for t in tasks] == ["agg", "trn"]
    assert {t["key"] for t in tasks} == {"hidden by system"}
    assert all(KEYS["trn"] not in json.dumps(t) for t in tasks)
    one = (await api.get(f"/users/{U}/jobs/j1/tasks/trn")).json()
    assert one["role"] == "trainer" and one["key"] == "hidden by system"
    assert one["groupAssociation"] == {"param-channel": "us"}
    assert (await api.get("/users/bob/jobs/j1/tasks")).status_code == 404
    assert (await api.get(f"/users/{U}/jobs/j1/tasks/ghost")).status_code == 404

    config = (await api.get(f"/users/{U}/jobs/j1/tasks/trn/config")).json()
    assert config["taskid"] == "trn" and config["role"] == "trainer"
    assert KEYS["trn"] not in json.dumps(config)
    assert (await api.get("/users/bob/jobs/j1/tasks/trn/config")).status_code == 404


async def test_task_status_reports(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    fake_controller = stack.controller
    await _controller_built_job(api, stack)
    r = await api.put(
        "/jobs/j1/trn/task/status/", json={"state": "running", "log": "go"}, headers=TRN
    )
    assert r.status_code == 200 and r.json() == {}
    [command] = fake_controller.commands
    assert isinstance(command, ReportTaskStatus)
    assert (command.user_id, command.job_id, command.task_id) == (U, "j1", "trn")
    assert command.status.state == "running" and command.status.log == "go"

    for state in ("starting", "ready", "deploying"):
        r = await api.put("/jobs/j1/trn/task/status", json={"state": state}, headers=TRN)
        assert r.status_code == 422, state
    r = await api.put("/jobs/j1/trn/task/status", json={"state": "bogus"}, headers=TRN)
    assert r.status_code == 422
    assert (await api.put("/jobs/j1/trn/task/status", json={}, headers=TRN)).status_code == 422
    r = await api.put("/jobs/j1/ghost/task/status", json={"state": "failed"}, headers=TRN)
    assert r.status_code == 404  # no stray task is created
    assert len(fake_controller.commands) == 1

    fake_controller.fail_with(NotFound("task 'trn' of job 'j1' not found"))
    r = await api.put("/jobs/j1/trn/task/status", json={"state": "completed"}, headers=TRN)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_task_status_needs_the_task_key(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    """Keyless or wrong-key reports are refused and reach nobody: the task is unchanged."""
    await _controller_built_job(api, stack)
    before = await stack.jobs.task("j1", "trn")
    for headers in ({}, {"X-Flame-Task-Key": ""}, {"X-Flame-Task-Key": KEYS["agg"]}):
        r = await api.put("/jobs/j1/trn/task/status", json={"state": "failed"}, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", headers
    assert stack.controller.commands == []
    assert await stack.jobs.task("j1", "trn") == before
