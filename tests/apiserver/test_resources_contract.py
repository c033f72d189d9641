"""The `Resources` port contract (flame_apiserver/ports.py), checked against every adapter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from flame_apiserver.memory import MemoryResources
from flame_apiserver.mongo import MongoResources
from flame_apiserver.ports import (
    AlreadyExists,
    ComputeRecord,
    DatasetRecord,
    DesignRecord,
    Resources,
    TaskLogSlice,
    TokenRecord,
)
from flame_common.db import init_db
from flame_common.settings import FlameSettings
from schemas.design import DesignSchema
from tests.apiserver.conftest import example

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _dataset(
    dataset_id: str, user: str = "u", url: str = "", public: bool = False
) -> DatasetRecord:
    return DatasetRecord(
        dataset_id=dataset_id,
        user_id=user,
        url=url or f"file:///{dataset_id}",
        data_format="csv",
        realm="default/us",
        is_public=public,
    )


def _compute(compute_id: str, region: str = "default/us", at: int = 0) -> ComputeRecord:
    when = T0 + timedelta(seconds=at)
    return ComputeRecord(
        compute_id=compute_id, registered_at=when, updated_at=when, region=region, admin_id="a"
    )


class ResourcesContract:
    """Cases every `Resources` adapter passes; subclasses provide the `resources` fixture."""

    async def test_designs(self, resources: Resources) -> None:
        await resources.add_design(DesignRecord(user_id="u", design_id="b", name="B"))
        await resources.add_design(DesignRecord(user_id="u", design_id="a"))
        await resources.add_design(DesignRecord(user_id="v", design_id="a"))
        with pytest.raises(AlreadyExists):
            await resources.add_design(DesignRecord(user_id="u", design_id="a"))
        assert [d.design_id for d in await resources.designs("u")] == ["a", "b"]
        assert [d.design_id for d in await resources.designs("u", limit=1)] == ["a"]
        assert await resources.designs("nobody") == []

        updated = await resources.update_design("u", "b", {"description": "new"})
        assert updated is not None and (updated.name, updated.description) == ("B", "new")
        assert await resources.design("u", "b") == updated
        assert await resources.update_design("u", "zzz", {"name": "x"}) is None

        assert await resources.delete_design("u", "a") is True
        assert await resources.delete_design("u", "a") is False
        assert await resources.design("u", "a") is None
        assert await resources.design("v", "a") is not None

    async def test_schema_revisions_never_repeat(self, resources: Resources) -> None:
        schema = DesignSchema.model_validate(example("mnist", "schema.json"))
        assert await resources.store_schema("u", "d", schema) is None
        await resources.add_design(DesignRecord(user_id="u", design_id="d"))
        first = await resources.store_schema("u", "d", schema)
        second = await resources.store_schema("u", "d", schema)
        assert first is not None and second is not None
        assert (first.revision, second.revision) == (1, 2)
        stored = await resources.design("u", "d")
        assert stored is not None and stored.schema == second.wire()
        assert stored.schema_revision == 2

        await resources.clear_schema("u", "d")
        cleared = await resources.design("u", "d")
        assert cleared is not None and cleared.schema is None
        third = await resources.store_schema("u", "d", schema)
        assert third is not None and third.revision == 3

    async def test_code_revisions(self, resources: Resources) -> None:
        assert await resources.add_code("u", "d", "c.zip", b"x", "h") is None
        await resources.add_design(DesignRecord(user_id="u", design_id="d"))
        one = await resources.add_code("u", "d", "one.zip", b"first", "h1")
        two = await resources.add_code("u", "d", "two.zip", b"second!", "h2")
        assert one is not None and two is not None
        assert (one.revision, two.revision) == (1, 2)
        assert (two.file_name, two.size, two.sha256) == ("two.zip", 7, "h2")
        assert await resources.code("u", "d", 1) == one
        assert await resources.code("u", "d", 3) is None
        design = await resources.design("u", "d")
        assert design is not None and design.code_revision == 2

        await resources.delete_code("u", "d")
        design = await resources.design("u", "d")
        assert design is not None and design.code_revision == 0
        assert await resources.code("u", "d", 1) is None
        again = await resources.add_code("u", "d", "c.zip", b"x", "h")
        assert again is not None and again.revision == 1

    async def test_concurrent_code_uploads_get_distinct_revisions(
        self, resources: Resources
    ) -> None:
        await resources.add_design(DesignRecord(user_id="u", design_id="d"))
        stored = await asyncio.gather(
            *(resources.add_code("u", "d", f"{i}.zip", b"z", "h") for i in range(4))
        )
        assert sorted(c.revision for c in stored if c) == [1, 2, 3, 4]
        design = await resources.design("u", "d")
        assert design is not None and design.code_revision == 4

    async def test_deleting_a_design_removes_its_code(self, resources: Resources) -> None:
        await resources.add_design(DesignRecord(user_id="u", design_id="d"))
        await resources.add_code("u", "d", "c.zip", b"x", "h")
        await resources.delete_design("u", "d")
        assert await resources.code("u", "d", 1) is None

    async def test_datasets(self, resources: Resources) -> None:
        await resources.add_dataset(_dataset("d2", public=True))
        await resources.add_dataset(_dataset("d1"))
        await resources.add_dataset(_dataset("d3", user="v", url="file:///d1", public=True))
        with pytest.raises(AlreadyExists):
            await resources.add_dataset(_dataset("d4", url="file:///d1"))
        assert [d.dataset_id for d in await resources.datasets(user_id="u")] == ["d1", "d2"]
        assert [d.dataset_id for d in await resources.datasets(public=True)] == ["d2", "d3"]
        assert [d.dataset_id for d in await resources.datasets(public=True, limit=1)] == ["d2"]
        assert sorted(await resources.datasets_by_id(["d1", "d3", "nope"])) == ["d1", "d3"]

        updated = await resources.update_dataset("d1", {"name": "N", "realm": "x/c1"})
        assert updated is not None and (updated.name, updated.realm) == ("N", "x/c1")
        assert await resources.dataset("d1") == updated
        with pytest.raises(AlreadyExists):
            await resources.update_dataset("d1", {"url": "file:///d2"})
        assert await resources.update_dataset("nope", {"name": "x"}) is None

        assert await resources.delete_dataset("d1") is True
        assert await resources.delete_dataset("d1") is False
        assert await resources.dataset("d1") is None

    async def test_computes_and_deployments(self, resources: Resources) -> None:
        await resources.add_compute(_compute("c2", at=1))
        await resources.add_compute(_compute("c1", at=2))
        await resources.add_compute(_compute("c3", region="default/eu"))
        with pytest.raises(AlreadyExists):
            await resources.add_compute(_compute("c1"))
        first = await resources.first_compute_in("default/us")
        assert first is not None and first.compute_id == "c2"
        assert await resources.first_compute_in("default") is None
        assert [c.compute_id for c in await resources.computes_of("a")] == ["c1", "c2", "c3"]
        assert await resources.computes_of("b") == []

        later = T0 + timedelta(days=1)
        changed = await resources.update_compute("c1", {"region": "r", "updated_at": later})
        assert changed is not None and (changed.region, changed.updated_at) == ("r", later)
        assert changed.registered_at == T0 + timedelta(seconds=2)
        assert await resources.update_compute("nope", {"region": "r"}) is None

        assert await resources.deployment("j", "c1") is None
        await resources.put_deployment("j", "c1", {"t1": "running"})
        await resources.put_deployment("j", "c1", {"t2": "completed"})
        assert await resources.deployment("j", "c1") == {"t2": "completed"}
        assert await resources.deployment("j", "c2") is None

    async def test_tokens(self, resources: Resources) -> None:
        one = TokenRecord("t1", "a" * 64, "alice", name="laptop", created_at=T0)
        two = TokenRecord("t2", "b" * 64, "bob", scope="admin", created_at=T0)
        three = TokenRecord("t0", "c" * 64, "alice", scope="compute-registration")
        for token in (one, two, three):
            await resources.add_token(token)
        with pytest.raises(AlreadyExists):
            await resources.add_token(TokenRecord("t1", "d" * 64, "alice"))
        with pytest.raises(AlreadyExists):
            await resources.add_token(TokenRecord("t9", "a" * 64, "carol"))
        assert await resources.token_by_hash("a" * 64) == one
        assert await resources.token_by_hash("e" * 64) is None
        assert [t.token_id for t in await resources.tokens("alice")] == ["t0", "t1"]
        assert [t.token_id for t in await resources.tokens()] == ["t0", "t1", "t2"]
        assert await resources.tokens("nobody") == []

        assert await resources.delete_token("t1") == one
        assert await resources.delete_token("t1") is None
        assert await resources.token_by_hash("a" * 64) is None
        await resources.add_token(TokenRecord("t3", "a" * 64, "alice"))  # the hash is free again

    async def test_task_log_appends_once_by_offset(self, resources: Resources) -> None:
        assert await resources.task_log("j", "t", 0, 100) == TaskLogSlice(0, b"", 0)
        assert await resources.append_task_log("j", "t", 0, b"one\n", keep=1000) == 4
        assert await resources.append_task_log("j", "t", 0, b"one\n", keep=1000) == 4  # a retry
        assert await resources.append_task_log("j", "t", 2, b"e\ntwo\n", keep=1000) == 8
        assert await resources.append_task_log("j", "t", 8, b"", keep=1000) == 8
        assert await resources.task_log("j", "t", 0, 100) == TaskLogSlice(0, b"one\ntwo\n", 8)
        assert await resources.task_log("j", "t", 3, 3) == TaskLogSlice(3, b"\ntw", 8)
        assert await resources.task_log("j", "t", 8, 100) == TaskLogSlice(8, b"", 8)
        assert await resources.task_log("j", "t", 50, 100) == TaskLogSlice(50, b"", 8)
        assert await resources.task_log("j", "other", 0, 100) == TaskLogSlice(0, b"", 0)
        assert (await resources.task_log("j", "t", 5, 100)).next == 8

    async def test_task_log_keeps_the_last_bytes_and_leaves_gaps(
        self, resources: Resources
    ) -> None:
        for i in range(10):  # chunks of 10 bytes; keep 25: whole chunks ending 25+ back go
            await resources.append_task_log("j", "t", 10 * i, bytes([65 + i]) * 10, keep=25)
        kept = await resources.task_log("j", "t", 0, 1000)
        assert (kept.start, kept.end, kept.data) == (70, 100, b"H" * 10 + b"I" * 10 + b"J" * 10)
        # an agent that skipped bytes: the read stops at the gap, the next one starts past it
        assert await resources.append_task_log("j", "t", 150, b"late", keep=1000) == 154
        assert await resources.task_log("j", "t", 95, 1000) == TaskLogSlice(95, b"JJJJJ", 154)
        assert await resources.task_log("j", "t", 100, 1000) == TaskLogSlice(150, b"late", 154)

        await resources.append_task_log("j2", "t", 0, b"other job", keep=1000)
        await resources.delete_task_logs("j")
        assert await resources.task_log("j", "t", 0, 1000) == TaskLogSlice(0, b"", 0)
        assert (await resources.task_log("j2", "t", 0, 1000)).data == b"other job"


class TestMemoryResources(ResourcesContract):
    @pytest.fixture
    def resources(self) -> Resources:
        return MemoryResources()


@pytest.mark.integration
class TestMongoResources(ResourcesContract):
    @pytest.fixture
    async def resources(self, settings: FlameSettings) -> AsyncIterator[Resources]:
        client = await init_db(settings, MongoResources.documents)
        yield MongoResources()
        await client.close()
