"""`//` comment keys in REST bodies (schema, dataset, job with dataSpec and modelSpec) are ignored;
any other unknown key is a 422 naming it, and nothing is written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.commands import CommandReply, CreateJob
from schemas.job import JobStatus
from schemas.states import JobState
from tests.apiserver.conftest import FakeController, MemoryStack
from tests.comments import CASES, Where, case_id, dotted, read, request_body, with_key

IDS = [case_id(*c) for c in CASES]


@pytest.fixture
async def dataset_id(api: httpx.AsyncClient) -> str:
    """The mnist dataset, public, of another user: the dataSpec of every job names it."""
    r = await api.post("/users/publisher/datasets", json=read("dataset.json"))
    assert r.status_code == 201, r.text
    return str(r.json())


def _bodies(file: str, where: Where, dataset_id: str) -> tuple[str, Any, Where]:
    kind, body, inside = request_body(file, where)
    if kind == "job.json":
        body["dataSpec"][0]["datasetGroups"] = {"us": [dataset_id]}
    return kind, body, inside


async def _post(client: httpx.AsyncClient, user: str, kind: str, body: Any) -> httpx.Response:
    if kind == "schema.json":
        r = await client.post(f"/users/{user}/designs", json={"id": "mnist"})
        assert r.status_code == 201, r.text
        return await client.post(f"/users/{user}/designs/mnist/schema", json=body)
    if kind == "dataset.json":
        return await client.post(f"/users/{user}/datasets", json=body)
    return await client.post(f"/users/{user}/jobs", json=body)


async def _stored(
    client: httpx.AsyncClient, user: str, kind: str, created: httpx.Response, fake: FakeController
) -> Any:
    """What the server keeps of a created body (a job's: the spec sent to the controller)."""
    if kind == "schema.json":
        return (await client.get(f"/users/{user}/designs/mnist/schema")).json()
    if kind == "dataset.json":
        got = (await client.get(f"/users/{user}/datasets/{created.json()}")).json()
        return {k: v for k, v in got.items() if k not in ("id", "userId")}
    command = fake.commands[-1]
    assert isinstance(command, CreateJob) and command.user_id == user
    return command.spec.model_copy(update={"user_id": ""})


def _ready(_: Any) -> CommandReply:
    return CommandReply.success(
        JobStatus(id="j1", name="mnist example", state=JobState.READY).wire()
    )


@pytest.mark.parametrize(("file", "where"), CASES, ids=IDS)
async def test_comment_keys_are_ignored(
    api: httpx.AsyncClient,
    stack: MemoryStack,
    dataset_id: str,
    file: str,
    where: Where,
) -> None:
    stack.controller.respond = _ready
    kind, body, inside = _bodies(file, where, dataset_id)
    plain = await _post(api, "alice", kind, body)
    assert plain.status_code == 201, plain.text
    expected = await _stored(api, "alice", kind, plain, stack.controller)
    commented = with_key(with_key(body, inside, "//"), inside, "// license: Apache-2.0")
    created = await _post(api, "bob", kind, commented)
    assert created.status_code == 201, created.text
    assert await _stored(api, "bob", kind, created, stack.controller) == expected


@pytest.mark.parametrize(("file", "where"), CASES, ids=IDS)
async def test_other_unknown_keys_are_refused_by_name(
    api: httpx.AsyncClient,
    stack: MemoryStack,
    dataset_id: str,
    file: str,
    where: Where,
) -> None:
    stack.controller.respond = _ready
    kind, body, inside = _bodies(file, where, dataset_id)
    bad = with_key(with_key(body, inside, "//"), inside, "isPubic")
    r = await _post(api, "alice", kind, bad)
    assert r.status_code == 422
    assert r.json() == {
        "code": "invalid",
        "message": f"unknown field '{dotted(inside, 'isPubic')}'",
    }
    # nothing written: no schema, no dataset, no command to the controller
    design = (await api.get("/users/alice/designs/mnist")).json()
    assert kind != "schema.json" or design["schema"] is None
    assert (await api.get("/users/alice/datasets")).json() == []
    assert stack.controller.commands == []
