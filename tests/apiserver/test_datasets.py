"""Datasets through the REST API: the realm placement matrix, visibility, partial updates."""

from __future__ import annotations

import httpx
import pytest

from flame_common.documents import DatasetDoc
from tests.apiserver.conftest import EventSink, example

pytestmark = pytest.mark.integration

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
    app_client: httpx.AsyncClient,
    realm: str,
    public: bool,
    status: int,
    stored_realm: str | None,
    compute: str | None,
) -> None:
    await _compute(app_client, "default", "default/us")
    await _compute(app_client, "west-1", "default/us/west")
    r = await app_client.post(f"/users/{U}/datasets", json=_dataset(realm, public))
    assert r.status_code == status, r.text
    if status != 201:
        assert r.json()["code"] == "invalid"
        assert await DatasetDoc.find({"user_id": U}).count() == 0
        return
    dataset_id = r.json()
    assert isinstance(dataset_id, str) and len(dataset_id) == 24
    got = (await app_client.get(f"/users/{U}/datasets/{dataset_id}")).json()
    assert (got["realm"], got["computeId"]) == (stored_realm, compute)
    assert got["id"] == dataset_id and got["userId"] == U


async def test_first_registered_compute_of_a_region_wins(app_client: httpx.AsyncClient) -> None:
    await _compute(app_client, "zeta", "default/eu")
    await _compute(app_client, "alpha", "default/eu")
    r = await app_client.post(f"/users/{U}/datasets", json=_dataset("default/eu", False))
    got = (await app_client.get(f"/users/{U}/datasets/{r.json()}")).json()
    assert got["computeId"] == "zeta"


async def test_dataset_lifecycle(app_client: httpx.AsyncClient, event_sink: EventSink) -> None:
    await _compute(app_client, "default", "default/us")
    assert (await app_client.get("/datasets")).json() == []
    assert (await app_client.get(f"/users/{U}/datasets/")).json() == []

    mnist = example("mnist", "dataset.json")
    r = await app_client.post(
        f"/users/{U}/datasets", json={**mnist, "id": "mine", "userId": "bob", "computeId": "x"}
    )
    assert r.status_code == 201
    public_id = r.json()
    assert public_id != "mine"
    private = _dataset("default", False, url="file:///data/private.npz")
    private_id = (await app_client.post(f"/users/{U}/datasets", json=private)).json()
    bobs = (await app_client.post("/users/bob/datasets", json=_dataset("default", False))).json()
    await event_sink.wait_for("dataset.created", 3)

    stored = await DatasetDoc.find_one({"dataset_id": public_id})
    assert stored is not None and stored.user_id == U and stored.compute_id == "default"

    dup = await app_client.post(f"/users/{U}/datasets", json=mnist)
    assert dup.status_code == 409

    assert [d["id"] for d in (await app_client.get("/datasets/")).json()] == [public_id]
    mine = {d["id"] for d in (await app_client.get(f"/users/{U}/datasets")).json()}
    assert mine == {public_id, private_id}
    assert (await app_client.get(f"/users/{U}/datasets/{bobs}")).status_code == 404
    assert (await app_client.get(f"/users/bob/datasets/{public_id}")).status_code == 200

    # partial update: ids are kept, fields not sent are kept
    r = await app_client.put(f"/users/{U}/datasets/{private_id}", json={"description": "x"})
    assert r.status_code == 200
    updated = r.json()
    assert updated["id"] == private_id and updated["userId"] == U
    assert updated["description"] == "x" and updated["url"] == private["url"]
    r = await app_client.put(f"/users/{U}/datasets/{private_id}", json={"id": "other"})
    assert r.status_code == 422
    r = await app_client.put(f"/users/{U}/datasets/{private_id}", json={"realm": "nowhere"})
    assert r.status_code == 422
    assert (await DatasetDoc.find_one({"dataset_id": private_id})).realm == "default/us/default"  # type: ignore[union-attr]
    r = await app_client.put(f"/users/bob/datasets/{private_id}", json={"name": "stolen"})
    assert r.status_code == 404

    assert (await app_client.delete(f"/users/bob/datasets/{private_id}")).status_code == 404
    assert (await app_client.delete(f"/users/{U}/datasets/{private_id}/")).status_code == 200
    assert await DatasetDoc.find_one({"dataset_id": private_id}) is None
    await event_sink.wait_for("dataset.deleted")


async def test_dataset_bad_input(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post(f"/users/{U}/datasets", json={"url": "u", "realm": "default/x"})
    assert r.status_code == 422 and "dataFormat" in r.json()["message"]
    r = await app_client.post(f"/users/{U}/datasets", json={**_dataset("default/x", True), "//": 1})
    assert r.status_code == 422
    r = await app_client.post(
        f"/users/{U}/datasets", content=b"[", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert await DatasetDoc.find({}).count() == 0
