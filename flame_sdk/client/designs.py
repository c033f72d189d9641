"""Designs, their TAG schema and their code bundle (all scoped to one design id)."""

from __future__ import annotations

import builtins
from typing import Any

from flame_sdk.client.base import Resource
from schemas.design import Design, DesignInfo, DesignSchema, DesignUpdate


class DesignsClient(Resource):
    async def create(self, design_id: str, *, name: str = "", description: str = "") -> DesignInfo:
        info = DesignInfo(id=design_id, name=name, description=description, user_id=self._user)
        body = await self._t.json("POST", self._path("designs"), json=info.wire())
        return DesignInfo.model_validate(body) if isinstance(body, dict) else info

    async def list(self, *, limit: int = 100) -> builtins.list[DesignInfo]:
        body = await self._t.json("GET", self._path("designs"), params={"limit": limit})
        return [DesignInfo.model_validate(d) for d in body or []]

    async def get(self, design_id: str) -> Design:
        body = await self._t.json("GET", self._path("designs", design_id))
        return Design.model_validate(body)

    async def update(
        self, design_id: str, *, name: str | None = None, description: str | None = None
    ) -> DesignInfo:
        """Change the given fields only (ids are never overwritten)."""
        change = DesignUpdate(name=name, description=description)
        body = await self._t.json(
            "PUT", self._path("designs", design_id), json=change.wire(exclude_none=True)
        )
        if isinstance(body, dict):
            return DesignInfo.model_validate(body)
        design = await self.get(design_id)
        return DesignInfo.model_validate(design.model_dump(exclude={"schema_"}))

    async def delete(self, design_id: str, *, force: bool = False) -> None:
        params = {"forceDelete": "true" if force else "false"}
        await self._t.request("DELETE", self._path("designs", design_id), params=params)


class SchemasClient(Resource):
    async def create(self, design_id: str, schema: DesignSchema) -> DesignSchema:
        """Set the design's schema; the server assigns the next revision."""
        return await self._put_or_post("POST", design_id, schema)

    async def update(self, design_id: str, schema: DesignSchema) -> DesignSchema:
        return await self._put_or_post("PUT", design_id, schema)

    async def get(self, design_id: str) -> DesignSchema:
        body = await self._t.json("GET", self._path("designs", design_id, "schema"))
        return DesignSchema.model_validate(body)

    async def delete(self, design_id: str) -> None:
        await self._t.request("DELETE", self._path("designs", design_id, "schema"))

    async def _put_or_post(self, method: str, design_id: str, schema: DesignSchema) -> DesignSchema:
        body = await self._t.json(
            method, self._path("designs", design_id, "schema"), json=schema.wire()
        )
        if isinstance(body, dict) and "roles" in body:
            return DesignSchema.model_validate(body)
        return await self.get(design_id)


class CodeClient(Resource):
    async def upload(self, design_id: str, data: bytes, *, file_name: str = "code.zip") -> int:
        """Upload a zip (one top-level folder per role); returns the new code revision."""
        body = await self._t.json(
            "POST",
            self._path("designs", design_id, "code"),
            data={"fileName": file_name},
            files={"fileData": (file_name, data, "application/zip")},
        )
        revision = _revision(body)
        return revision if revision is not None else await self.revision(design_id)

    async def download(self, design_id: str, *, revision: int = 0) -> bytes:
        """The code zip of the latest revision, or of `revision` when given."""
        params = {"revision": revision} if revision else None
        response = await self._t.request(
            "GET", self._path("designs", design_id, "code"), params=params
        )
        return response.content

    async def revision(self, design_id: str) -> int:
        body = await self._t.json("GET", self._path("designs", design_id, "code", "revision"))
        return _revision(body) or 0

    async def delete(self, design_id: str) -> None:
        await self._t.request("DELETE", self._path("designs", design_id, "code"))


def _revision(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("revision"), int):
        return int(body["revision"])
    return None
