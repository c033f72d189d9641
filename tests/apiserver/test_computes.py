"""Computes through the REST API: idempotent registration, listing, key-checked deployment views."""

from __future__ import annotations

import httpx

from tests.apiserver.conftest import MemoryStack

SPEC = {"computeId": "c1", "region": "default/us", "apiKey": "secret-1", "adminId": "ops"}


async def test_registration_is_idempotent(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    first = await api.post("/computes", json=SPEC)
    assert first.status_code == 201
    status = first.json()
    assert status["computeId"] == "c1" and status["state"] == "up" and status["registeredAt"]
    await stack.events.wait_for("compute.registered")

    again = await api.post("/computes/", json={**SPEC, "region": "default/eu"})
    assert again.status_code == 200
    assert again.json()["registeredAt"] == status["registeredAt"]
    stored = await stack.resources.compute("c1")
    assert stored is not None and stored.region == "default/eu" and stored.api_key == "secret-1"

    taken = await api.post("/computes", json={**SPEC, "apiKey": "other"})
    assert taken.status_code == 409 and "already in use" in taken.json()["message"]
    kept = await stack.resources.compute("c1")
    assert kept is not None and kept.api_key == "secret-1"
    assert [c.compute_id for c in await stack.resources.computes_of("ops")] == ["c1"]


async def test_compute_bad_input(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    r = await api.post("/computes", json={"region": "default/us"})
    assert r.status_code == 422 and "computeId" in r.json()["message"]
    r = await api.post("/computes", json={**SPEC, "secret": 1})
    assert r.status_code == 422
    assert await stack.resources.computes_of("ops") == []


async def test_listing_hides_api_keys(api: httpx.AsyncClient) -> None:
    await api.post("/computes", json=SPEC)
    await api.post("/computes", json={**SPEC, "computeId": "c2", "managed": False})
    await api.post("/computes", json={**SPEC, "computeId": "c3", "adminId": "other"})
    listed = (await api.get("/computes?adminId=ops")).json()
    assert [c["computeId"] for c in listed] == ["c1", "c2"]
    assert all("apiKey" not in c for c in listed) and "secret-1" not in str(listed)
    assert [c["managed"] for c in listed] == [True, False]
    assert (await api.get("/computes?adminId=nobody")).json() == []
    assert (await api.get("/computes")).status_code == 400
    empty = await api.get("/computes?adminId=")
    assert empty.status_code == 400 and "adminId" in empty.json()["message"]


async def test_deployment_config_requires_the_key(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await api.post("/computes", json=SPEC)
    await api.post("/computes", json={**SPEC, "computeId": "c2", "apiKey": "secret-2"})
    stack.job("j1", "u")
    stack.task("j1", "t1", "trainer", "k1", compute_id="c1")
    stack.task("j1", "t2", "trainer", "k2", compute_id="c1")
    stack.task("j1", "t3", "aggregator", "k3", compute_id="c2")
    url = "/computes/c1/deployments/j1/config"
    assert (await api.get(url)).status_code == 401
    assert (await api.get(url, headers={"X-API-KEY": "secret-2"})).status_code == 401
    assert (await api.get(url, headers={"X-API-KEY": ""})).status_code == 401
    r = await api.get(f"{url}/", headers={"X-API-KEY": "secret-1"})
    assert r.status_code == 200
    assert r.json() == {"jobId": "j1", "imageLoc": "", "agentKVs": {"t1": "k1", "t2": "k2"}}
    r = await api.get("/computes/c2/deployments/j1/config", headers={"X-API-KEY": "secret-2"})
    assert r.json()["agentKVs"] == {"t3": "k3"}
    missing = await api.get(
        "/computes/c1/deployments/nope/config", headers={"X-API-KEY": "secret-1"}
    )
    assert missing.status_code == 404
    unknown = await api.get("/computes/zz/deployments/j1/config", headers={"X-API-KEY": "x"})
    assert unknown.status_code == 404

    jobs = await api.get("/jobs/c1", headers={"X-API-KEY": "secret-1"})
    assert [j["id"] for j in jobs.json()] == ["j1"]
    assert (await api.get("/jobs/c1")).status_code == 401


async def test_deployment_status(api: httpx.AsyncClient) -> None:
    await api.post("/computes", json=SPEC)
    key = {"X-API-KEY": "secret-1"}
    url = "/computes/c1/deployments/j1/status"
    assert (await api.get(url, headers=key)).status_code == 404
    r = await api.put(url, json={"t1": "agentDeploySuccess"}, headers=key)
    assert r.status_code == 200
    r = await api.put(url, json={"t1": "agentRevokeSuccess"}, headers=key)
    got = (await api.get(url, headers=key)).json()
    assert got["agentStatuses"] == {"t1": "agentRevokeSuccess"}
    bad = await api.put(url, json={"t1": "exploded"}, headers=key)
    assert bad.status_code == 422
    assert (await api.put(url, json={"t1": "agentDeploySuccess"})).status_code == 401
    assert (await api.get("/computes/c1", headers=key)).json()["computeId"] == "c1"
