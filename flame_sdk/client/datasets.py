"""Datasets: metadata of data that lives with a compute (realm, visibility)."""

from __future__ import annotations

import builtins

from flame_sdk.client.base import Resource
from schemas.dataset import DatasetInfo, DatasetUpdate
from schemas.errors import FlameError


class DatasetsClient(Resource):
    async def create(self, dataset: DatasetInfo) -> str:
        """Register a dataset; returns its new id (`userId`/`computeId` are set by the server)."""
        body = await self._t.json(
            "POST", self._path("datasets"), json=dataset.wire(exclude={"id", "compute_id"})
        )
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return str(body["id"])
        if isinstance(body, str) and body:
            return body
        raise FlameError(f"the apiserver did not return the id of the new dataset (got {body!r})")

    async def list(self, *, public: bool = False, limit: int = 100) -> builtins.list[DatasetInfo]:
        """The user's datasets, or with `public=True` the public datasets of every user."""
        path = "/datasets" if public else self._path("datasets")
        body = await self._t.json("GET", path, params={"limit": limit})
        return [DatasetInfo.model_validate(d) for d in body or []]

    async def get(self, dataset_id: str) -> DatasetInfo:
        body = await self._t.json("GET", self._path("datasets", dataset_id))
        return DatasetInfo.model_validate(body)

    async def update(self, dataset_id: str, change: DatasetUpdate) -> DatasetInfo:
        """Change the fields set in `change` (ids are never overwritten)."""
        body = await self._t.json(
            "PUT",
            self._path("datasets", dataset_id),
            json=change.wire(exclude_none=True, exclude={"id", "user_id"}),
        )
        return (
            DatasetInfo.model_validate(body)
            if isinstance(body, dict)
            else await self.get(dataset_id)
        )

    async def delete(self, dataset_id: str) -> None:
        await self._t.request("DELETE", self._path("datasets", dataset_id))
