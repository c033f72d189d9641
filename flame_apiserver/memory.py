"""In-memory adapters of the apiserver's ports: resources and published events (tests, demos)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from flame_apiserver.ports import (
    AlreadyExists,
    CodeRecord,
    ComputeRecord,
    DatasetRecord,
    DesignRecord,
    TaskLogSlice,
    TokenRecord,
)
from flame_apiserver.tasklogs import Chunk, chunk_end, contiguous
from schemas.design import DesignSchema
from schemas.events import EventBase


def _capped(items: Iterable[Any], limit: int) -> list[Any]:
    listed = list(items)
    return listed[:limit] if limit > 0 else listed


class MemoryResources:
    """Dicts keyed like the Mongo unique indexes; every method runs without awaiting, so each
    is atomic on the event loop."""

    def __init__(self) -> None:
        self._designs: dict[tuple[str, str], DesignRecord] = {}
        self._code: dict[tuple[str, str], dict[int, CodeRecord]] = {}
        self._datasets: dict[str, DatasetRecord] = {}
        self._computes: dict[str, ComputeRecord] = {}
        self._deployments: dict[tuple[str, str], dict[str, str]] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._token_ids: dict[str, str] = {}  # sha256 -> token id
        self._logs: dict[tuple[str, str], list[Chunk]] = {}  # by offset

    # --- designs and schema ----------------------------------------------------------------

    async def designs(self, user_id: str, limit: int = 0) -> list[DesignRecord]:
        mine = sorted((d for d in self._designs.values() if d.user_id == user_id), key=_design_id)
        return _capped(mine, limit)

    async def design(self, user_id: str, design_id: str) -> DesignRecord | None:
        return self._designs.get((user_id, design_id))

    async def add_design(self, design: DesignRecord) -> None:
        key = (design.user_id, design.design_id)
        if key in self._designs:
            raise AlreadyExists(design.design_id)
        self._designs[key] = design

    def _change(self, user_id: str, design_id: str, **changes: Any) -> DesignRecord | None:
        design = self._designs.get((user_id, design_id))
        if design is None:
            return None
        design = self._designs[(user_id, design_id)] = dataclasses.replace(design, **changes)
        return design

    async def update_design(
        self, user_id: str, design_id: str, changes: dict[str, str]
    ) -> DesignRecord | None:
        return self._change(user_id, design_id, **changes)

    async def delete_design(self, user_id: str, design_id: str) -> bool:
        self._code.pop((user_id, design_id), None)
        return self._designs.pop((user_id, design_id), None) is not None

    async def store_schema(
        self, user_id: str, design_id: str, schema: DesignSchema
    ) -> DesignSchema | None:
        design = self._designs.get((user_id, design_id))
        if design is None:
            return None
        stored = schema.model_copy(update={"revision": design.schema_revision + 1})
        self._change(user_id, design_id, schema=stored.wire(), schema_revision=stored.revision)
        return stored

    async def clear_schema(self, user_id: str, design_id: str) -> None:
        self._change(user_id, design_id, schema=None)

    # --- code ------------------------------------------------------------------------------

    async def add_code(
        self, user_id: str, design_id: str, file_name: str, data: bytes, sha256: str
    ) -> CodeRecord | None:
        design = self._designs.get((user_id, design_id))
        if design is None:
            return None
        revisions = self._code.setdefault((user_id, design_id), {})
        revision = max([design.code_revision, *revisions]) + 1
        code = revisions[revision] = CodeRecord(revision, file_name, data, len(data), sha256)
        self._change(user_id, design_id, code_revision=revision)
        return code

    async def code(self, user_id: str, design_id: str, revision: int) -> CodeRecord | None:
        return self._code.get((user_id, design_id), {}).get(revision)

    async def delete_code(self, user_id: str, design_id: str) -> None:
        self._code.pop((user_id, design_id), None)
        self._change(user_id, design_id, code_revision=0)

    # --- datasets --------------------------------------------------------------------------

    async def datasets(
        self, *, user_id: str | None = None, public: bool = False, limit: int = 0
    ) -> list[DatasetRecord]:
        found = (
            d for d in self._datasets.values() if (d.is_public if public else d.user_id == user_id)
        )
        return _capped(sorted(found, key=lambda d: d.dataset_id), limit)

    async def dataset(self, dataset_id: str) -> DatasetRecord | None:
        return self._datasets.get(dataset_id)

    async def datasets_by_id(self, dataset_ids: list[str]) -> dict[str, DatasetRecord]:
        return {i: self._datasets[i] for i in dataset_ids if i in self._datasets}

    def _url_taken(self, dataset: DatasetRecord) -> bool:
        return any(
            d.user_id == dataset.user_id and d.url == dataset.url
            for d in self._datasets.values()
            if d.dataset_id != dataset.dataset_id
        )

    async def add_dataset(self, dataset: DatasetRecord) -> None:
        if dataset.dataset_id in self._datasets or self._url_taken(dataset):
            raise AlreadyExists(dataset.url)
        self._datasets[dataset.dataset_id] = dataset

    async def update_dataset(
        self, dataset_id: str, changes: dict[str, Any]
    ) -> DatasetRecord | None:
        dataset = self._datasets.get(dataset_id)
        if dataset is None:
            return None
        updated = dataclasses.replace(dataset, **changes)
        if self._url_taken(updated):
            raise AlreadyExists(updated.url)
        self._datasets[dataset_id] = updated
        return updated

    async def delete_dataset(self, dataset_id: str) -> bool:
        return self._datasets.pop(dataset_id, None) is not None

    # --- computes and deployments ----------------------------------------------------------

    async def compute(self, compute_id: str) -> ComputeRecord | None:
        return self._computes.get(compute_id)

    async def first_compute_in(self, region: str) -> ComputeRecord | None:
        found = [c for c in self._computes.values() if c.region == region]
        return min(found, key=lambda c: (c.registered_at, c.compute_id), default=None)

    async def computes_of(self, admin_id: str) -> list[ComputeRecord]:
        found = (c for c in self._computes.values() if c.admin_id == admin_id)
        return sorted(found, key=lambda c: c.compute_id)

    async def add_compute(self, compute: ComputeRecord) -> None:
        if compute.compute_id in self._computes:
            raise AlreadyExists(compute.compute_id)
        self._computes[compute.compute_id] = compute

    async def update_compute(
        self, compute_id: str, changes: dict[str, Any]
    ) -> ComputeRecord | None:
        compute = self._computes.get(compute_id)
        if compute is None:
            return None
        compute = self._computes[compute_id] = dataclasses.replace(compute, **changes)
        return compute

    async def put_deployment(self, job_id: str, compute_id: str, statuses: dict[str, str]) -> None:
        self._deployments[(job_id, compute_id)] = dict(statuses)

    async def deployment(self, job_id: str, compute_id: str) -> dict[str, str] | None:
        statuses = self._deployments.get((job_id, compute_id))
        return dict(statuses) if statuses is not None else None

    # --- API tokens ------------------------------------------------------------------------

    async def add_token(self, token: TokenRecord) -> None:
        if token.token_id in self._tokens or token.sha256 in self._token_ids:
            raise AlreadyExists(token.token_id)
        self._tokens[token.token_id] = token
        self._token_ids[token.sha256] = token.token_id

    async def token_by_hash(self, sha256: str) -> TokenRecord | None:
        token_id = self._token_ids.get(sha256)
        return self._tokens[token_id] if token_id is not None else None

    async def tokens(self, user_id: str | None = None) -> list[TokenRecord]:
        found = (t for t in self._tokens.values() if user_id is None or t.user_id == user_id)
        return sorted(found, key=lambda t: t.token_id)

    async def delete_token(self, token_id: str) -> TokenRecord | None:
        token = self._tokens.pop(token_id, None)
        if token is not None:
            del self._token_ids[token.sha256]
        return token

    # --- task output -----------------------------------------------------------------------

    async def append_task_log(
        self, job_id: str, task_id: str, offset: int, data: bytes, keep: int
    ) -> int:
        chunks = self._logs.setdefault((job_id, task_id), [])
        end = chunk_end(chunks[-1]) if chunks else 0
        if not data or offset + len(data) <= end:
            return end
        if offset < end:
            data, offset = data[end - offset :], end
        chunks.append((offset, data))
        end = offset + len(data)
        chunks[:] = [c for c in chunks if chunk_end(c) > end - keep]
        return end

    async def task_log(self, job_id: str, task_id: str, offset: int, limit: int) -> TaskLogSlice:
        chunks = self._logs.get((job_id, task_id), [])
        end = chunk_end(chunks[-1]) if chunks else 0
        return contiguous([c for c in chunks if chunk_end(c) > offset], offset, limit, end)

    async def delete_task_logs(self, job_id: str) -> None:
        for key in [k for k in self._logs if k[0] == job_id]:
            del self._logs[key]


def _design_id(design: DesignRecord) -> str:
    return design.design_id


class MemoryPublisher:
    """Keeps every published event in `events`, in order."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    async def publish(self, event: EventBase) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[EventBase]:
        return [e for e in self.events if e.type == event_type]
