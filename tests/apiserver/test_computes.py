"""Computes through the REST API: idempotent registration, listing, key-checked deployment views."""

from __future__ import annotations

import httpx
import pytest

from flame_common.documents import ComputeDoc, JobDoc, TaskDoc
from tests.apiserver.conftest import EventSink

pytestmark = pytest.mark.integration

SPEC = {"computeId": "c1", "region": "default/us", "apiKey": "secret-1", "adminId": "ops"}


async def test_registration_is_idempotent(
    app_client: httpx.AsyncClient, event_sink: EventSink
) -> None:
    first = await app_client.post("/computes", json=SPEC)
    assert first.status_code == 201
    status = first.json()
    assert status["computeId"] == "c1" and status["state"] == "up" and status["registeredAt"]
    await event_sink.wait_for("compute.registered")

    again = await app_client.post("/computes/", json={**SPEC, "region": "default/eu"})
    assert again.status_code == 200
    assert again.json()["registeredAt"] == status["registeredAt"]
    stored = await ComputeDoc.find_one({"compute_id": "c1"})
    assert stored is not None and stored.region == "default/eu" and stored.api_key == "secret-1"

    taken = await app_client.post("/computes", json={**SPEC, "apiKey": "other"})
    assert taken.status_code == 409 and "already in use" in taken.json()["message"]
    assert (await ComputeDoc.find_one({"compute_id": "c1"})).api_key == "secret-1"  # type: ignore[union-attr]
    assert await ComputeDoc.find({}).count() == 1


async def test_compute_bad_input(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/computes", json={"region": "default/us"})
    assert r.status_code == 422 and "computeId" in r.json()["message"]
    r = await app_client.post("/computes", json={**SPEC, "secret": 1})
    assert r.status_code == 422
    assert await ComputeDoc.find({}).count() == 0


async def test_listing_hides_api_keys(app_client: httpx.AsyncClient) -> None:
    await app_client.post("/computes", json=SPEC)
    await app_client.post("/computes", json={**SPEC, "computeId": "c2", "managed": False})
    await app_client.post("/computes", json={**SPEC, "computeId": "c3", "adminId": "other"})
    listed = (await app_client.get("/computes?adminId=ops")).json()
    assert [c["computeId"] for c in listed] == ["c1", "c2"]
    assert all("apiKey" not in c for c in listed) and "secret-1" not in str(listed)
    assert [c["managed"] for c in listed] == [True, False]
    assert (await app_client.get("/computes?adminId=nobody")).json() == []
    assert (await app_client.get("/computes")).status_code == 400


async def test_deployment_config_requires_the_key(app_client: httpx.AsyncClient) -> None:
    await app_client.post("/computes", json=SPEC)
    await app_client.post("/computes", json={**SPEC, "computeId": "c2", "apiKey": "secret-2"})
    await JobDoc(job_id="j1", user_id="u", name="j", design_id="d", spec={}).insert()
    await TaskDoc.insert_many(
        [
            TaskDoc(job_id="j1", task_id="t1", role="trainer", compute_id="c1", key="k1"),
            TaskDoc(job_id="j1", task_id="t2", role="trainer", compute_id="c1", key="k2"),
            TaskDoc(job_id="j1", task_id="t3", role="aggregator", compute_id="c2", key="k3"),
        ]
    )
    url = "/computes/c1/deployments/j1/config"
    assert (await app_client.get(url)).status_code == 401
    assert (await app_client.get(url, headers={"X-API-KEY": "secret-2"})).status_code == 401
    assert (await app_client.get(url, headers={"X-API-KEY": ""})).status_code == 401
    r = await app_client.get(f"{url}/", headers={"X-API-KEY": "secret-1"})
    assert r.status_code == 200
    assert r.json() == {"jobId": "j1", "imageLoc": "", "agentKVs": {"t1": "k1", "t2": "k2"}}
    r = await app_client.get(
        "/computes/c2/deployments/j1/config", headers={"X-API-KEY": "secret-2"}
    )
    assert r.json()["agentKVs"] == {"t3": "k3"}
    missing = await app_client.get(
        "/computes/c1/deployments/nope/config", headers={"X-API-KEY": "secret-1"}
    )
    assert missing.status_code == 404
    unknown = await app_client.get("/computes/zz/deployments/j1/config", headers={"X-API-KEY": "x"})
    assert unknown.status_code == 404

    jobs = await app_client.get("/jobs/c1", headers={"X-API-KEY": "secret-1"})
    assert [j["id"] for j in jobs.json()] == ["j1"]
    assert (await app_client.get("/jobs/c1")).status_code == 401


async def test_deployment_status(app_client: httpx.AsyncClient) -> None:
    await app_client.post("/computes", json=SPEC)
    key = {"X-API-KEY": "secret-1"}
    url = "/computes/c1/deployments/j1/status"
    assert (await app_client.get(url, headers=key)).status_code == 404
    r = await app_client.put(url, json={"t1": "agentDeploySuccess"}, headers=key)
    assert r.status_code == 200
    r = await app_client.put(url, json={"t1": "agentRevokeSuccess"}, headers=key)
    got = (await app_client.get(url, headers=key)).json()
    assert got["agentStatuses"] == {"t1": "agentRevokeSuccess"}
    bad = await app_client.put(url, json={"t1": "exploded"}, headers=key)
    assert bad.status_code == 422
    assert (await app_client.put(url, json={"t1": "agentDeploySuccess"})).status_code == 401
    assert (await app_client.get("/computes/c1", headers=key)).json()["computeId"] == "c1"
