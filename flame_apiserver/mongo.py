"""`Resources` over MongoDB (Beanie documents of `flame_common.documents`)."""

from __future__ import annotations

from typing import Any, TypeVar

from beanie import Document
from pymongo.errors import DuplicateKeyError

from flame_apiserver.ports import (
    AlreadyExists,
    CodeRecord,
    ComputeRecord,
    Contended,
    DatasetRecord,
    DesignRecord,
    TaskLogSlice,
    TokenRecord,
)
from flame_apiserver.tasklogs import Chunk, contiguous
from flame_common.documents import (
    CodeDoc,
    ComputeDoc,
    DatasetDoc,
    DeploymentDoc,
    DesignDoc,
    TaskLogChunkDoc,
    TokenDoc,
    as_utc,
    maybe_utc,
)
from schemas.design import DesignSchema

_RETRIES = 5

D = TypeVar("D", bound=Document)


def _design(doc: DesignDoc) -> DesignRecord:
    return DesignRecord(
        user_id=doc.user_id,
        design_id=doc.design_id,
        name=doc.name,
        description=doc.description,
        schema=doc.schema_,
        schema_revision=doc.schema_revision,
        code_revision=doc.code_revision,
    )


def _code(doc: CodeDoc) -> CodeRecord:
    return CodeRecord(doc.revision, doc.file_name, doc.data, doc.size, doc.sha256)


def _dataset(doc: DatasetDoc) -> DatasetRecord:
    return DatasetRecord(
        dataset_id=doc.dataset_id,
        user_id=doc.user_id,
        url=doc.url,
        data_format=doc.data_format,
        realm=doc.realm,
        name=doc.name,
        description=doc.description,
        compute_id=doc.compute_id,
        is_public=doc.is_public,
    )


def _compute(doc: ComputeDoc) -> ComputeRecord:
    return ComputeRecord(
        compute_id=doc.compute_id,
        registered_at=as_utc(doc.registered_at),
        updated_at=as_utc(doc.updated_at),
        region=doc.region,
        admin_id=doc.admin_id,
        api_key=doc.api_key,
        managed=doc.managed,
        state=doc.state,
    )


def _token(doc: TokenDoc) -> TokenRecord:
    return TokenRecord(
        token_id=doc.token_id,
        sha256=doc.sha256,
        user_id=doc.user_id,
        scope=doc.scope,
        name=doc.name,
        created_at=maybe_utc(doc.created_at),
    )


def _capped(query: Any, limit: int) -> Any:
    return query.limit(limit) if limit > 0 else query


async def _set(kind: type[D], match: dict[str, Any], changes: dict[str, Any]) -> D | None:
    """Apply `changes` to the document matching `match` and read it back (None when absent)."""
    if changes:
        try:
            await kind.get_pymongo_collection().update_one(match, {"$set": changes})
        except DuplicateKeyError as exc:
            raise AlreadyExists(str(changes)) from exc
    return await kind.find_one(match)


class MongoResources:
    """One merged filter dict per query (nx-27017 is slow on `$and`); unique indexes decide
    duplicates."""

    documents: list[type[Document]] = [
        DesignDoc,
        CodeDoc,
        DatasetDoc,
        ComputeDoc,
        DeploymentDoc,
        TokenDoc,
        TaskLogChunkDoc,
    ]

    # --- designs and schema ----------------------------------------------------------------

    async def designs(self, user_id: str, limit: int = 0) -> list[DesignRecord]:
        query = DesignDoc.find({"user_id": user_id}).sort("design_id")
        return [_design(d) for d in await _capped(query, limit).to_list()]

    async def design(self, user_id: str, design_id: str) -> DesignRecord | None:
        doc = await DesignDoc.find_one({"user_id": user_id, "design_id": design_id})
        return _design(doc) if doc else None

    async def add_design(self, design: DesignRecord) -> None:
        doc = DesignDoc(
            user_id=design.user_id,
            design_id=design.design_id,
            name=design.name,
            description=design.description,
        )
        try:
            await doc.insert()
        except DuplicateKeyError as exc:
            raise AlreadyExists(design.design_id) from exc

    async def update_design(
        self, user_id: str, design_id: str, changes: dict[str, str]
    ) -> DesignRecord | None:
        doc = await _set(DesignDoc, {"user_id": user_id, "design_id": design_id}, changes)
        return _design(doc) if doc else None

    async def delete_design(self, user_id: str, design_id: str) -> bool:
        doc = await DesignDoc.find_one({"user_id": user_id, "design_id": design_id})
        if doc is None:
            return False
        await doc.delete()
        await CodeDoc.find({"user_id": user_id, "design_id": design_id}).delete()
        return True

    async def store_schema(
        self, user_id: str, design_id: str, schema: DesignSchema
    ) -> DesignSchema | None:
        collection = DesignDoc.get_pymongo_collection()
        for _ in range(_RETRIES):
            doc = await DesignDoc.find_one({"user_id": user_id, "design_id": design_id})
            if doc is None:
                return None
            stored = schema.model_copy(update={"revision": doc.schema_revision + 1})
            result = await collection.update_one(
                {"_id": doc.id, "schema_revision": doc.schema_revision},
                {"$set": {"schema": stored.wire(), "schema_revision": stored.revision}},
            )
            if result.modified_count == 1:
                return stored
        raise Contended(design_id)

    async def clear_schema(self, user_id: str, design_id: str) -> None:
        await DesignDoc.get_pymongo_collection().update_one(
            {"user_id": user_id, "design_id": design_id}, {"$set": {"schema": None}}
        )

    # --- code ------------------------------------------------------------------------------

    async def _latest_code(self, user_id: str, design_id: str) -> int:
        query = CodeDoc.find({"user_id": user_id, "design_id": design_id}).sort("-revision")
        docs = await query.limit(1).to_list()
        return docs[0].revision if docs else 0

    async def add_code(
        self, user_id: str, design_id: str, file_name: str, data: bytes, sha256: str
    ) -> CodeRecord | None:
        for _ in range(_RETRIES):
            design = await DesignDoc.find_one({"user_id": user_id, "design_id": design_id})
            if design is None:
                return None
            revision = max(design.code_revision, await self._latest_code(user_id, design_id)) + 1
            doc = CodeDoc(
                user_id=user_id,
                design_id=design_id,
                revision=revision,
                file_name=file_name,
                data=data,
                size=len(data),
                sha256=sha256,
            )
            try:
                await doc.insert()
            except DuplicateKeyError:
                continue
            await DesignDoc.get_pymongo_collection().update_one(
                {"_id": design.id, "code_revision": {"$lt": revision}},
                {"$set": {"code_revision": revision}},
            )
            return _code(doc)
        raise Contended(design_id)

    async def code(self, user_id: str, design_id: str, revision: int) -> CodeRecord | None:
        doc = await CodeDoc.find_one(
            {"user_id": user_id, "design_id": design_id, "revision": revision}
        )
        return _code(doc) if doc else None

    async def delete_code(self, user_id: str, design_id: str) -> None:
        await DesignDoc.get_pymongo_collection().update_one(
            {"user_id": user_id, "design_id": design_id}, {"$set": {"code_revision": 0}}
        )
        await CodeDoc.find({"user_id": user_id, "design_id": design_id}).delete()

    # --- datasets --------------------------------------------------------------------------

    async def datasets(
        self, *, user_id: str | None = None, public: bool = False, limit: int = 0
    ) -> list[DatasetRecord]:
        query = {"is_public": True} if public else {"user_id": user_id}
        found = DatasetDoc.find(query).sort("dataset_id")
        return [_dataset(d) for d in await _capped(found, limit).to_list()]

    async def dataset(self, dataset_id: str) -> DatasetRecord | None:
        doc = await DatasetDoc.find_one({"dataset_id": dataset_id})
        return _dataset(doc) if doc else None

    async def datasets_by_id(self, dataset_ids: list[str]) -> dict[str, DatasetRecord]:
        docs = await DatasetDoc.find({"dataset_id": {"$in": sorted(dataset_ids)}}).to_list()
        return {d.dataset_id: _dataset(d) for d in docs}

    async def add_dataset(self, dataset: DatasetRecord) -> None:
        try:
            await DatasetDoc(**vars(dataset)).insert()
        except DuplicateKeyError as exc:
            raise AlreadyExists(dataset.url) from exc

    async def update_dataset(
        self, dataset_id: str, changes: dict[str, Any]
    ) -> DatasetRecord | None:
        doc = await _set(DatasetDoc, {"dataset_id": dataset_id}, changes)
        return _dataset(doc) if doc else None

    async def delete_dataset(self, dataset_id: str) -> bool:
        result = await DatasetDoc.find({"dataset_id": dataset_id}).delete()
        return bool(result and result.deleted_count)

    # --- computes and deployments ----------------------------------------------------------

    async def compute(self, compute_id: str) -> ComputeRecord | None:
        doc = await ComputeDoc.find_one({"compute_id": compute_id})
        return _compute(doc) if doc else None

    async def first_compute_in(self, region: str) -> ComputeRecord | None:
        query = ComputeDoc.find({"region": region}).sort("registered_at", "compute_id")
        docs = await query.limit(1).to_list()
        return _compute(docs[0]) if docs else None

    async def computes_of(self, admin_id: str) -> list[ComputeRecord]:
        docs = await ComputeDoc.find({"admin_id": admin_id}).sort("compute_id").to_list()
        return [_compute(d) for d in docs]

    async def add_compute(self, compute: ComputeRecord) -> None:
        try:
            await ComputeDoc(**vars(compute)).insert()
        except DuplicateKeyError as exc:
            raise AlreadyExists(compute.compute_id) from exc

    async def update_compute(
        self, compute_id: str, changes: dict[str, Any]
    ) -> ComputeRecord | None:
        doc = await _set(ComputeDoc, {"compute_id": compute_id}, changes)
        return _compute(doc) if doc else None

    async def put_deployment(self, job_id: str, compute_id: str, statuses: dict[str, str]) -> None:
        await DeploymentDoc.get_pymongo_collection().update_one(
            {"job_id": job_id, "compute_id": compute_id},
            {"$set": {"agent_statuses": statuses}},
            upsert=True,
        )

    async def deployment(self, job_id: str, compute_id: str) -> dict[str, str] | None:
        doc = await DeploymentDoc.find_one({"job_id": job_id, "compute_id": compute_id})
        return dict(doc.agent_statuses) if doc else None

    # --- API tokens ------------------------------------------------------------------------

    async def add_token(self, token: TokenRecord) -> None:
        fields = {k: v for k, v in vars(token).items() if v is not None}
        try:
            await TokenDoc(**fields).insert()
        except DuplicateKeyError as exc:
            raise AlreadyExists(token.token_id) from exc

    async def token_by_hash(self, sha256: str) -> TokenRecord | None:
        doc = await TokenDoc.find_one({"sha256": sha256})
        return _token(doc) if doc else None

    async def tokens(self, user_id: str | None = None) -> list[TokenRecord]:
        match = {} if user_id is None else {"user_id": user_id}
        return [_token(d) for d in await TokenDoc.find(match).sort("token_id").to_list()]

    async def delete_token(self, token_id: str) -> TokenRecord | None:
        doc = await TokenDoc.find_one({"token_id": token_id})
        if doc is None:
            return None
        result = await TokenDoc.find({"token_id": token_id}).delete()
        return _token(doc) if result and result.deleted_count else None

    # --- task output -----------------------------------------------------------------------

    async def _log_end(self, job_id: str, task_id: str) -> int:
        query = TaskLogChunkDoc.find({"job_id": job_id, "task_id": task_id}).sort("-offset")
        docs = await query.limit(1).to_list()
        return docs[0].end if docs else 0

    async def append_task_log(
        self, job_id: str, task_id: str, offset: int, data: bytes, keep: int
    ) -> int:
        for _ in range(_RETRIES):
            end = await self._log_end(job_id, task_id)
            if not data or offset + len(data) <= end:
                return end
            start, piece = (end, data[end - offset :]) if offset < end else (offset, data)
            doc = TaskLogChunkDoc(
                job_id=job_id, task_id=task_id, offset=start, end=start + len(piece), data=piece
            )
            try:  # the unique (job, task, offset) index refuses a concurrent append's twin
                await doc.insert()
            except DuplicateKeyError:
                continue
            if doc.end > keep:  # only a log past its bound has chunks to drop
                await TaskLogChunkDoc.find(
                    {"job_id": job_id, "task_id": task_id, "end": {"$lte": doc.end - keep}}
                ).delete()
            return doc.end
        raise Contended(f"log of task {task_id}")

    async def task_log(self, job_id: str, task_id: str, offset: int, limit: int) -> TaskLogSlice:
        end = await self._log_end(job_id, task_id)
        query = TaskLogChunkDoc.find(
            {"job_id": job_id, "task_id": task_id, "end": {"$gt": offset}}
        ).sort("offset")
        chunks: list[Chunk] = []
        size = 0
        async for doc in query:  # only as many chunks as `limit` bytes need
            chunks.append((doc.offset, doc.data))
            size += len(doc.data)
            if size >= limit + (offset - chunks[0][0] if offset > chunks[0][0] else 0):
                break
        return contiguous(chunks, offset, limit, end)

    async def delete_task_logs(self, job_id: str) -> None:
        await TaskLogChunkDoc.find({"job_id": job_id}).delete()
