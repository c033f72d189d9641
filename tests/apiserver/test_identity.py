"""Identity on the REST API: bearer tokens, users kept apart, admin and registration scopes."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.token import token_sha256
from tests.apiserver.conftest import MNIST_CODE, MemoryStack, example
from tests.support.zips import make_zip

NO_TOKEN = {"Authorization": ""}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_token(api: httpx.AsyncClient, user: str, **spec: Any) -> dict[str, Any]:
    r = await api.post("/tokens", json={"userId": user, **spec})  # as the admin
    assert r.status_code == 201, r.text
    return dict(r.json())


async def alice_with_a_design_and_a_job(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await api.post("/users/alice/designs", json={"id": "d", "name": "mine"})
    code = {"fileData": ("c.zip", make_zip(MNIST_CODE))}
    assert (await api.post("/users/alice/designs/d/code", files=code)).status_code == 201
    stack.job("j1", "alice", design_id="d")
    stack.task("j1", "t1", "trainer", "k" * 32)


async def test_no_or_unknown_token_is_401(api: httpx.AsyncClient) -> None:
    for headers in (NO_TOKEN, bearer("not-a-token"), {"Authorization": "Basic YTpi"}):
        r = await api.get("/users/alice/designs", headers=headers)
        assert r.status_code == 401, headers
        assert set(r.json()) == {"code", "message"} and r.json()["code"] == "unauthorized"
    assert (await api.get("/datasets", headers=NO_TOKEN)).status_code == 401
    assert (await api.get("/tokens", headers=NO_TOKEN)).status_code == 401


async def test_another_users_token_is_403_and_changes_nothing(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await alice_with_a_design_and_a_job(api, stack)
    bob = bearer((await new_token(api, "bob"))["token"])
    new_code = {"fileData": ("evil.zip", make_zip({"trainer/main.py": b"steal()\n"}))}
    attempts = [
        ("GET", "/users/alice/designs", {}),
        ("GET", "/users/alice/designs/d", {}),
        ("PUT", "/users/alice/designs/d", {"json": {"name": "owned"}}),
        ("DELETE", "/users/alice/designs/d", {}),
        ("PUT", "/users/alice/designs/d/code", {"files": new_code}),
        ("POST", "/users/alice/designs/d/code", {"files": new_code}),
        ("GET", "/users/alice/designs/d/code", {}),
        ("GET", "/users/alice/jobs", {}),
        ("GET", "/users/alice/jobs/j1", {}),
        ("PUT", "/users/alice/jobs/j1/status", {"json": {"id": "j1", "state": "stopping"}}),
        ("DELETE", "/users/alice/jobs/j1", {}),
        ("GET", "/users/alice/jobs/j1/tasks/t1/config", {}),
        ("GET", "/users/alice/jobs/j1/events", {}),
        ("GET", "/users/alice/jobs/j1/metrics", {}),
        ("GET", "/users/alice/datasets", {}),
    ]
    for method, path, kwargs in attempts:
        r = await api.request(method, path, headers=bob, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json() == {
            "code": "forbidden",
            "message": "a token of user 'bob' cannot act for user 'alice'",
        }
    design = await stack.resources.design("alice", "d")
    assert design is not None and design.name == "mine" and design.code_revision == 1
    stored = await stack.resources.code("alice", "d", 1)
    assert stored is not None and stored.file_name == "c.zip"
    assert stack.controller.commands == []  # no stop, no delete reached the controller


async def test_own_token_works_and_admin_acts_for_anyone(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await alice_with_a_design_and_a_job(api, stack)
    alice = bearer((await new_token(api, "alice"))["token"])
    r = await api.get("/users/alice/designs", headers=alice)
    assert r.status_code == 200 and [d["id"] for d in r.json()] == ["d"]
    assert (await api.get("/users/alice/jobs/j1/tasks", headers=alice)).status_code == 200
    assert (await api.get("/users/alice/designs")).status_code == 200  # the admin token
    assert (await api.get("/users/carol/designs")).status_code == 200


async def test_revoked_token_is_401(api: httpx.AsyncClient) -> None:
    created = await new_token(api, "alice", name="laptop")
    alice = bearer(created["token"])
    assert (await api.get("/users/alice/designs", headers=alice)).status_code == 200  # cached now
    r = await api.delete(f"/tokens/{created['id']}", headers=alice)  # a user revokes its own
    assert r.status_code == 200
    r = await api.get("/users/alice/designs", headers=alice)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert (await api.delete(f"/tokens/{created['id']}")).status_code == 404


async def test_tokens_are_stored_hashed(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    created = await new_token(api, "alice", name="ci")
    [stored] = await stack.resources.tokens("alice")
    assert stored.sha256 == token_sha256(created["token"])
    assert created["token"] not in repr(stored)
    listed = (await api.get("/tokens", params={"userId": "alice"})).json()
    assert listed == [{k: v for k, v in created.items() if k != "token"}]


async def test_users_manage_only_their_own_user_tokens(api: httpx.AsyncClient) -> None:
    alice = bearer((await new_token(api, "alice"))["token"])
    bobs = await new_token(api, "bob")
    own = await api.post("/tokens", json={"userId": "alice", "name": "second"}, headers=alice)
    assert own.status_code == 201 and own.json()["scope"] == "user"
    for spec in (
        {"userId": "alice", "scope": "admin"},
        {"userId": "alice", "scope": "compute-registration"},
        {"userId": "bob"},
    ):
        r = await api.post("/tokens", json=spec, headers=alice)
        assert r.status_code == 403, spec
    mine = (await api.get("/tokens", headers=alice)).json()
    assert {t["userId"] for t in mine} == {"alice"} and len(mine) == 2
    assert (await api.get("/tokens?userId=bob", headers=alice)).status_code == 403
    assert (await api.delete(f"/tokens/{bobs['id']}", headers=alice)).status_code == 404
    assert (await api.get("/users/bob/designs", headers=bearer(bobs["token"]))).status_code == 200


async def test_public_datasets_cross_users_private_ones_do_not(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    alice = bearer((await new_token(api, "alice"))["token"])
    bob = bearer((await new_token(api, "bob"))["token"])
    shared = {"url": "file:///pub", "dataFormat": "npy", "realm": "default/us", "isPublic": True}
    private = {**shared, "url": "file:///priv", "isPublic": False}
    compute = {"computeId": "c1", "region": "default/us", "apiKey": "k"}
    assert (await api.post("/computes", json=compute)).status_code == 201
    made = [
        await api.post("/users/alice/datasets", json=d, headers=alice) for d in (shared, private)
    ]
    assert [r.status_code for r in made] == [201, 201], made[1].text
    public_id, private_id = (r.json() for r in made)

    r = await api.get(f"/users/bob/datasets/{public_id}", headers=bob)
    assert r.status_code == 200 and r.json()["url"] == "file:///pub"
    assert [d["id"] for d in (await api.get("/datasets", headers=bob)).json()] == [public_id]
    assert (await api.get(f"/users/bob/datasets/{private_id}", headers=bob)).status_code == 404
    assert (await api.get(f"/users/alice/datasets/{private_id}", headers=bob)).status_code == 403

    await api.post("/users/bob/designs", json={"id": "b"}, headers=bob)
    job = {
        **{k: v for k, v in example("mnist", "job.json").items() if not k.endswith("Path")},
        "designId": "b",
        "dataSpec": [{"role": "trainer", "datasetGroups": {"us": [private_id]}}],
        "modelSpec": example("mnist", "modelSpec.json"),
    }
    r = await api.post("/users/bob/jobs", json=job, headers=bob)
    assert r.status_code == 403 and stack.controller.commands == []


async def test_compute_registration_needs_admin_or_registration_token(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    """A user cannot squat a region: the first compute of a region gets its datasets."""
    squatter = {"computeId": "eu-1", "region": "default/eu", "apiKey": "mine"}
    bob = bearer((await new_token(api, "bob"))["token"])
    assert (await api.post("/computes", json=squatter, headers=NO_TOKEN)).status_code == 401
    r = await api.post("/computes", json=squatter, headers=bob)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert await stack.resources.compute("eu-1") is None
    assert (await api.get("/computes?adminId=ops", headers=bob)).status_code == 403

    registrar = bearer((await new_token(api, "ops", scope="compute-registration"))["token"])
    legit = {**squatter, "apiKey": "ops-key", "adminId": "ops"}
    assert (await api.post("/computes", json=legit, headers=registrar)).status_code == 201
    assert (await api.get("/users/ops/designs", headers=registrar)).status_code == 403
    assert (await api.get("/deadletters", headers=registrar)).status_code == 403
    assert (await api.get("/deadletters", headers=bob)).status_code == 403


async def test_bootstrap_registration_token_from_settings(stack: MemoryStack, tmp_path) -> None:
    from flame_common.settings import FlameSettings
    from tests.apiserver.conftest import api_client

    settings = FlameSettings(
        home=tmp_path, mongo_url="", registration_token_sha256=token_sha256("deployer-secret")
    )
    spec = {"computeId": "default", "region": "default", "apiKey": "k"}
    async with api_client(settings, stack.ports()) as client:
        r = await client.post("/computes", json=spec, headers=bearer("deployer-secret"))
        assert r.status_code == 201
        r = await client.get("/users/admin/designs", headers=bearer("deployer-secret"))
        assert r.status_code == 403


async def test_openapi_declares_bearer_on_user_routes(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json", headers=NO_TOKEN)).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    paths = spec["paths"]
    for path, method in (
        ("/users/{user}/designs", "get"),
        ("/users/{user}/designs/{design_id}/code", "put"),
        ("/users/{user}/jobs/{job_id}/status", "put"),
        ("/users/{user}/datasets/{dataset_id}", "get"),
        ("/datasets", "get"),
        ("/computes", "post"),
        ("/tokens", "post"),
    ):
        assert paths[path][method]["security"] == [{"HTTPBearer": []}], path
    agent = paths["/jobs/{job_id}/{task_id}/task"]["get"]
    assert "security" not in agent
    assert any(p["name"] == "X-Flame-Task-Key" for p in agent["parameters"])
