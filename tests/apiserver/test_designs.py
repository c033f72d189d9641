"""Designs and schemas through the REST API: lifecycle, revisions, validation, cascade delete."""

from __future__ import annotations

import httpx
import pytest

from flame_common.documents import CodeDoc, DesignDoc, JobDoc
from tests.apiserver.conftest import MNIST_CODE, EventSink, example, make_zip

pytestmark = pytest.mark.integration

U = "alice"


async def _design(client: httpx.AsyncClient, design_id: str = "mnist") -> None:
    r = await client.post(f"/users/{U}/designs", json={"id": design_id, "description": "d"})
    assert r.status_code == 201, r.text


async def test_design_lifecycle(app_client: httpx.AsyncClient, event_sink: EventSink) -> None:
    assert (await app_client.get(f"/users/{U}/designs")).json() == []
    r = await app_client.post(
        f"/users/{U}/designs", json={"id": "mnist", "name": "M", "userId": "mallory"}
    )
    assert r.status_code == 201
    assert r.json() == {"id": "mnist", "name": "M", "description": "", "userId": U}
    created = await event_sink.wait_for("design.created")
    assert created[0].payload.resource_id == "mnist" and created[0].payload.user_id == U

    dup = await app_client.post(f"/users/{U}/designs/", json={"id": "mnist"})
    assert dup.status_code == 409 and dup.json()["code"] == "conflict"

    listed = await app_client.get(f"/users/{U}/designs/?limit=100")
    assert [d["id"] for d in listed.json()] == ["mnist"]
    assert (await app_client.get("/users/bob/designs")).json() == []

    got = (await app_client.get(f"/users/{U}/designs/mnist")).json()
    assert got == {"id": "mnist", "name": "M", "description": "", "userId": U, "schema": None}

    # partial update: only the description changes, ids are kept
    r = await app_client.put(f"/users/{U}/designs/mnist", json={"description": "new"})
    assert r.status_code == 200
    assert r.json() == {"id": "mnist", "name": "M", "description": "new", "userId": U}
    r = await app_client.put(f"/users/{U}/designs/mnist", json={"id": "other"})
    assert r.status_code == 422
    r = await app_client.put(f"/users/{U}/designs/mnist", json={"userId": "bob"})
    assert r.status_code == 422
    assert (await DesignDoc.find_one({"design_id": "mnist"})).user_id == U  # type: ignore[union-attr]

    r = await app_client.delete(f"/users/{U}/designs/mnist")
    assert r.status_code == 200
    assert (await app_client.get(f"/users/{U}/designs/mnist")).status_code == 404
    await event_sink.wait_for("design.deleted")


async def test_design_bad_input(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post(
        f"/users/{U}/designs", content=b'{"id": "x",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = await app_client.post(f"/users/{U}/designs", json={"id": "x", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["message"]
    r = await app_client.post(f"/users/{U}/designs", json={"name": "no id"})
    assert r.status_code == 422 and "id" in r.json()["message"]
    r = await app_client.post(f"/users/{U}/designs", json={"id": "../etc"})
    assert r.status_code == 422
    assert await DesignDoc.find({"user_id": U}).count() == 0
    r = await app_client.get(f"/users/{U}/designs/missing")
    assert r.status_code == 404
    assert r.json() == {
        "code": "not_found",
        "message": "design 'missing' of user 'alice' not found",
    }


async def test_schema_revisions(app_client: httpx.AsyncClient, event_sink: EventSink) -> None:
    await _design(app_client)
    schema = example("mnist", "schema.json")
    assert (await app_client.get(f"/users/{U}/designs/mnist/schema")).status_code == 404

    r = await app_client.post(f"/users/{U}/designs/mnist/schema", json={**schema, "revision": 7})
    assert r.status_code == 201 and r.json()["revision"] == 1
    r = await app_client.put(f"/users/{U}/designs/mnist/schema/", json=schema)
    assert r.status_code == 200 and r.json()["revision"] == 2
    got = (await app_client.get(f"/users/{U}/designs/mnist/schema")).json()
    assert got["revision"] == 2
    assert [r["name"] for r in got["roles"]] == ["trainer", "aggregator"]
    assert got["channels"][0]["funcTags"]["trainer"] == ["fetch", "upload"]
    design = (await app_client.get(f"/users/{U}/designs/mnist")).json()
    assert design["schema"] == got
    events = await event_sink.wait_for("schema.updated", 2)
    assert [e.payload.revision for e in events] == [1, 2]

    r = await app_client.delete(f"/users/{U}/designs/mnist/schema")
    assert r.status_code == 200
    assert (await app_client.get(f"/users/{U}/designs/mnist/schema")).status_code == 404
    r = await app_client.post(f"/users/{U}/designs/mnist/schema", json=schema)
    assert r.json()["revision"] == 3  # revisions never repeat

    missing = await app_client.post(f"/users/{U}/designs/nope/schema", json=schema)
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
    app_client: httpx.AsyncClient, mutate: object, status: int, needle: str
) -> None:
    await _design(app_client)
    good = example("mnist", "schema.json")
    assert (await app_client.post(f"/users/{U}/designs/mnist/schema", json=good)).status_code == 201
    bad = example("mnist", "schema.json")
    mutate(bad)  # type: ignore[operator]
    for method in ("post", "put"):
        r = await app_client.request(method, f"/users/{U}/designs/mnist/schema", json=bad)
        assert r.status_code == status, r.text
        assert r.json()["code"] == "invalid" and needle in r.json()["message"]
    stored = (await app_client.get(f"/users/{U}/designs/mnist/schema")).json()
    assert stored["revision"] == 1 and stored["channels"][0]["pair"] == ["trainer", "aggregator"]


async def test_schema_malformed_json(app_client: httpx.AsyncClient) -> None:
    await _design(app_client)
    r = await app_client.post(
        f"/users/{U}/designs/mnist/schema",
        content=b"{roles: []}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert (await DesignDoc.find_one({"design_id": "mnist"})).schema_ is None  # type: ignore[union-attr]


async def test_delete_design_cascades_and_respects_jobs(app_client: httpx.AsyncClient) -> None:
    await _design(app_client)
    await app_client.post(f"/users/{U}/designs/mnist/schema", json=example("mnist", "schema.json"))
    files = {"fileData": ("mnist.zip", make_zip(MNIST_CODE), "application/zip")}
    r = await app_client.post(
        f"/users/{U}/designs/mnist/code", files=files, data={"fileName": "m.zip"}
    )
    assert r.status_code == 201
    await JobDoc(job_id="j1", user_id=U, name="j", design_id="mnist", spec={}).insert()

    r = await app_client.delete(f"/users/{U}/designs/mnist")
    assert r.status_code == 409 and "forceDelete" in r.json()["message"]
    assert await DesignDoc.find({"design_id": "mnist"}).count() == 1
    assert await CodeDoc.find({"design_id": "mnist"}).count() == 1

    r = await app_client.delete(f"/users/{U}/designs/mnist/?forceDelete=true")
    assert r.status_code == 200
    assert await DesignDoc.find({"design_id": "mnist"}).count() == 0
    assert await CodeDoc.find({"design_id": "mnist"}).count() == 0
    r = await app_client.delete(f"/users/{U}/designs/mnist?forceDelete=maybe")
    assert r.status_code == 400
