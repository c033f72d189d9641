"""Datasets through the REST API: the realm placement matrix, visibility, partial updates."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.apiserver.conftest import MemoryStack, example

U = "alice"


async def _compute(client: httpx.AsyncClient, compute_id: str, region: str) -> None:
    body = {
        "computeId": compute_id,
        "region": region,
        "apiKey": f"k-{compute_id}",
        "adminId": "ops",
    }
    assert (await client.post("/computes", json=body)).status_code == 201


def _dataset(realm: str, public: bool, url: str = "file:///data/a.npz") -> dict[str, object]:
    return {"name": "d", "url": url, "dataFormat": "npy", "realm": realm, "isPublic": public}


@pytest.mark.parametrize(
    ("realm", "public", "status", "stored_realm", "compute"),
    [
        ("default/us/west", True, 201, "default/us/west/west-1", "west-1"),  # region match
        ("default/us/west", False, 201, "default/us/west/west-1", "west-1"),
        ("default/eu", True, 201, "default/eu", "default"),  # no region match, public
        ("default/eu", False, 422, None, None),  # no region match, private: refused
        ("west-1", False, 201, "default/us/west/west-1", "west-1"),  # realm names a compute
        ("default", True, 201, "default/us/default", "default"),
        ("nowhere", True, 422, None, None),  # unknown compute, even when public
    ],
)
async def test_placement_matrix(
    api: httpx.AsyncClient,
    stack: MemoryStack,
    realm: str,
    public: bool,
    status: int,
    stored_realm: str | None,
    compute: str | None,
) -> None:
    await _compute(api, "default", "default/us")
    await _compute(api, "west-1", "default/us/west")
    r = await api.post(f"/users/{U}/datasets", json=_dataset(realm, public))
    assert r.status_code == status, r.text
    if status != 201:
        assert r.json()["code"] == "invalid"
        assert await stack.resources.datasets(user_id=U) == []
        return
    dataset_id = r.json()
    assert isinstance(dataset_id, str) and len(dataset_id) == 24
    got = (await api.get(f"/users/{U}/datasets/{dataset_id}")).json()
    assert (got["realm"], got["computeId"]) == (stored_realm, compute)
    assert got["id"] == dataset_id and got["userId"] == U


async def test_first_registered_compute_of_a_region_wins(api: httpx.AsyncClient) -> None:
    await _compute(api, "zeta", "default/eu")
    await asyncio.sleep(0.002)  # registration times are kept in ms (as MongoDB does): one later
    await _compute(api, "alpha", "default/eu")
    r = await api.post(f"/users/{U}/datasets", json=_dataset("default/eu", False))
    got = (await api.get(f"/users/{U}/datasets/{r.json()}")).json()
    assert got["computeId"] == "zeta"


async def test_dataset_lifecycle(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _compute(api, "default", "default/us")
    assert (await api.get("/datasets")).json() == []
    assert (await api.get(f"/users/{U}/datasets/")).json() == []

    mnist = example("mnist", "dataset.json")
    r = await api.post(
        f"/users/{U}/datasets", json={**mnist, "id": "mine", "userId": "bob", "computeId": "x"}
    )
    assert r.status_code == 201
    public_id = r.json()
    assert public_id != "mine"
    private = _dataset("default", False, url="file:///data/private.npz")
    private_id = (await api.post(f"/users/{U}/datasets", json=private)).json()
    bobs = (await api.post("/users/bob/datasets", json=_dataset("default", False))).json()
    await stack.events.wait_for("dataset.created", 3)

    stored = await stack.resources.dataset(public_id)
    assert stored is not None and stored.user_id == U and stored.compute_id == "default"

    dup = await api.post(f"/users/{U}/datasets", json=mnist)
    assert dup.status_code == 409

    assert [d["id"] for d in (await api.get("/datasets/")).json()] == [public_id]
    mine = {d["id"] for d in (await api.get(f"/users/{U}/datasets")).json()}
    assert mine == {public_id, private_id}
    assert (await api.get(f"/users/{U}/datasets/{bobs}")).status_code == 404
    assert (await api.get(f"/users/bob/datasets/{public_id}")).status_code == 200

    # partial update: ids are kept, fields not sent are kept
    r = await api.put(f"/users/{U}/datasets/{private_id}", json={"description": "x"})
    assert r.status_code == 200
    updated = r.json()
    assert updated["id"] == private_id and updated["userId"] == U
    assert updated["description"] == "x" and updated["url"] == private["url"]
    r = await api.put(f"/users/{U}/datasets/{private_id}", json={"id": "other"})
    assert r.status_code == 422
    r = await api.put(f"/users/{U}/datasets/{private_id}", json={"realm": "nowhere"})
    assert r.status_code == 422
    kept = await stack.resources.dataset(private_id)
    assert kept is not None and kept.realm == "default/us/default"
    r = await api.put(f"/users/bob/datasets/{private_id}", json={"name": "stolen"})
    assert r.status_code == 404

    assert (await api.delete(f"/users/bob/datasets/{private_id}")).status_code == 404
    assert (await api.delete(f"/users/{U}/datasets/{private_id}/")).status_code == 200
    assert await stack.resources.dataset(private_id) is None
    await stack.events.wait_for("dataset.deleted")


async def test_dataset_bad_input(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    r = await api.post(f"/users/{U}/datasets", json={"url": "u", "realm": "default/x"})
    assert r.status_code == 422 and "dataFormat" in r.json()["message"]
    r = await api.post(f"/users/{U}/datasets", json={**_dataset("default/x", True), "isPubic": 1})
    assert r.status_code == 422 and r.json()["message"] == "unknown field 'isPubic'"
    r = await api.post(
        f"/users/{U}/datasets", content=b"[", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert await stack.resources.datasets(user_id=U) == []
