"""Designs and schemas through the REST API: lifecycle, revisions, validation, cascade delete."""

from __future__ import annotations

import httpx
import pytest

from tests.apiserver.conftest import MNIST_CODE, MemoryStack, example
from tests.support.zips import make_zip

U = "alice"


async def _design(client: httpx.AsyncClient, design_id: str = "mnist") -> None:
    r = await client.post(f"/users/{U}/designs", json={"id": design_id, "description": "d"})
    assert r.status_code == 201, r.text


async def test_design_lifecycle(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    assert (await api.get(f"/users/{U}/designs")).json() == []
    r = await api.post(
        f"/users/{U}/designs", json={"id": "mnist", "name": "M", "userId": "mallory"}
    )
    assert r.status_code == 201
    assert r.json() == {"id": "mnist", "name": "M", "description": "", "userId": U}
    created = await stack.events.wait_for("design.created")
    assert created[0].payload.resource_id == "mnist" and created[0].payload.user_id == U

    dup = await api.post(f"/users/{U}/designs/", json={"id": "mnist"})
    assert dup.status_code == 409 and dup.json()["code"] == "conflict"

    listed = await api.get(f"/users/{U}/designs/?limit=100")
    assert [d["id"] for d in listed.json()] == ["mnist"]
    assert (await api.get("/users/bob/designs")).json() == []

    got = (await api.get(f"/users/{U}/designs/mnist")).json()
    assert got == {"id": "mnist", "name": "M", "description": "", "userId": U, "schema": None}

    # partial update: only the description changes, ids are kept
    r = await api.put(f"/users/{U}/designs/mnist", json={"description": "new"})
    assert r.status_code == 200
    assert r.json() == {"id": "mnist", "name": "M", "description": "new", "userId": U}
    r = await api.put(f"/users/{U}/designs/mnist", json={"id": "other"})
    assert r.status_code == 422
    r = await api.put(f"/users/{U}/designs/mnist", json={"userId": "bob"})
    assert r.status_code == 422
    assert await stack.resources.designs("bob") == []
    assert await stack.resources.design(U, "mnist") is not None

    r = await api.delete(f"/users/{U}/designs/mnist")
    assert r.status_code == 200
    assert (await api.get(f"/users/{U}/designs/mnist")).status_code == 404
    await stack.events.wait_for("design.deleted")


async def test_design_bad_input(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    r = await api.post(
        f"/users/{U}/designs", content=b'{"id": "x",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = await api.post(f"/users/{U}/designs", json={"id": "x", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["message"]
    r = await api.post(f"/users/{U}/designs", json={"name": "no id"})
    assert r.status_code == 422 and "id" in r.json()["message"]
    r = await api.post(f"/users/{U}/designs", json={"id": "../etc"})
    assert r.status_code == 422
    assert await stack.resources.designs(U) == []
    r = await api.get(f"/users/{U}/designs/missing")
    assert r.status_code == 404
    assert r.json() == {
        "code": "not_found",
        "message": "design 'missing' of user 'alice' not found",
    }


async def test_schema_revisions(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _design(api)
    schema = example("mnist", "schema.json")
    assert (await api.get(f"/users/{U}/designs/mnist/schema")).status_code == 404

    r = await api.post(f"/users/{U}/designs/mnist/schema", json={**schema, "revision": 7})
    assert r.status_code == 201 and r.json()["revision"] == 1
    r = await api.put(f"/users/{U}/designs/mnist/schema/", json=schema)
    assert r.status_code == 200 and r.json()["revision"] == 2
    got = (await api.get(f"/users/{U}/designs/mnist/schema")).json()
    assert got["revision"] == 2
    assert [r["name"] for r in got["roles"]] == ["trainer", "aggregator"]
    assert got["channels"][0]["funcTags"]["trainer"] == ["fetch", "upload"]
    design = (await api.get(f"/users/{U}/designs/mnist")).json()
    assert design["schema"] == got
    events = await stack.events.wait_for("schema.updated", 2)
    assert [e.payload.revision for e in events] == [1, 2]

    r = await api.delete(f"/users/{U}/designs/mnist/schema")
    assert r.status_code == 200
    assert (await api.get(f"/users/{U}/designs/mnist/schema")).status_code == 404
    r = await api.post(f"/users/{U}/designs/mnist/schema", json=schema)
    assert r.json()["revision"] == 3  # revisions never repeat

    missing = await api.post(f"/users/{U}/designs/nope/schema", json=schema)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda s: s["channels"][0].update(pair=["trainer", "ghost"]), 422, "ghost"),
        (lambda s: s["roles"].append({"name": "trainer"}), 422, "more than once"),
        (lambda s: s["roles"][0].update(colour="red"), 422, "colour"),
        (lambda s: s.pop("roles"), 422, "roles"),
        (lambda s: s["channels"][0].update(pair=["trainer"]), 422, "pair"),
        (lambda s: s["roles"][0]["groupAssociation"].append({"nochannel": "us"}), 422, "nochannel"),
    ],
)
async def test_schema_rejected(
    api: httpx.AsyncClient, mutate: object, status: int, needle: str
) -> None:
    await _design(api)
    good = example("mnist", "schema.json")
    assert (await api.post(f"/users/{U}/designs/mnist/schema", json=good)).status_code == 201
    bad = example("mnist", "schema.json")
    mutate(bad)  # type: ignore[operator]
    for method in ("post", "put"):
        r = await api.request(method, f"/users/{U}/designs/mnist/schema", json=bad)
        assert r.status_code == status, r.text
        assert r.json()["code"] == "invalid" and needle in r.json()["message"]
    stored = (await api.get(f"/users/{U}/designs/mnist/schema")).json()
    assert stored["revision"] == 1 and stored["channels"][0]["pair"] == ["trainer", "aggregator"]


async def test_schema_malformed_json(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _design(api)
    r = await api.post(
        f"/users/{U}/designs/mnist/schema",
        content=b"{roles: []}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    design = await stack.resources.design(U, "mnist")
    assert design is not None and design.schema is None


async def test_delete_design_cascades_and_respects_jobs(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _design(api)
    await api.post(f"/users/{U}/designs/mnist/schema", json=example("mnist", "schema.json"))
    files = {"fileData": ("mnist.zip", make_zip(MNIST_CODE), "application/zip")}
    r = await api.post(f"/users/{U}/designs/mnist/code", files=files, data={"fileName": "m.zip"})
    assert r.status_code == 201
    stack.job("j1", U, design_id="mnist")

    r = await api.delete(f"/users/{U}/designs/mnist")
    assert r.status_code == 409 and "forceDelete" in r.json()["message"]
    assert await stack.resources.design(U, "mnist") is not None
    assert await stack.resources.code(U, "mnist", 1) is not None

    r = await api.delete(f"/users/{U}/designs/mnist/?forceDelete=true")
    assert r.status_code == 200
    assert await stack.resources.design(U, "mnist") is None
    assert await stack.resources.code(U, "mnist", 1) is None
    r = await api.delete(f"/users/{U}/designs/mnist?forceDelete=maybe")
    assert r.status_code == 400
