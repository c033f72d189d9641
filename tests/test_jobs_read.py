"""The `JobReads` port contract (flame_common/jobs_read), checked against every adapter.

The controller owns the data; here a seeder plays it: straight into the memory adapter, or as
the controller's Beanie documents for the Mongo one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from flame_common.db import init_db
from flame_common.documents import EventDoc, JobDoc, TaskDoc
from flame_common.jobs_read import JobReads, JobRecord, TaskRecord
from flame_common.jobs_read.memory import MemoryJobReads
from flame_common.jobs_read.mongo import MongoJobReads
from flame_common.settings import FlameSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Seeder(Protocol):
    async def job(self, job: JobRecord) -> None: ...
    async def task(self, task: TaskRecord) -> None: ...
    async def event(self, job_id: str, seq: int, body: dict[str, Any]) -> None: ...
    async def remove_job(self, job_id: str) -> None: ...


def _job(job_id: str, user: str = "u", design: str = "d", at: int = 0, **kw: Any) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        user_id=user,
        name=job_id,
        design_id=design,
        spec={"name": job_id},
        state=kw.pop("state", "ready"),
        created_at=T0 + timedelta(seconds=at),
        **kw,
    )


def _task(job_id: str, task_id: str, role: str = "trainer", **kw: Any) -> TaskRecord:
    return TaskRecord(
        job_id=job_id, task_id=task_id, role=role, key=f"key-{task_id}", timestamp=T0, **kw
    )


class JobReadsContract:
    """Cases every `JobReads` adapter passes; subclasses provide `reads` and `seed`."""

    async def test_jobs(self, reads: JobReads, seed: Seeder) -> None:
        later = _job("j2", at=2, state="running", started_at=T0, reason="r", last_seq=7)
        await seed.job(later)
        await seed.job(_job("j1", at=1))
        await seed.job(_job("j3", user="v", at=0))
        assert await reads.job("j2") == later
        assert await reads.job("j2", "u") == later
        assert await reads.job("j2", "v") is None
        assert await reads.job("nope") is None
        assert [j.job_id for j in await reads.jobs_of_user("u")] == ["j1", "j2"]
        assert [j.job_id for j in await reads.jobs_of_user("u", limit=1)] == ["j1"]
        assert await reads.jobs_of_user("nobody") == []

    async def test_jobs_of_a_design(self, reads: JobReads, seed: Seeder) -> None:
        await seed.job(_job("j1"))
        await seed.job(_job("j2"))
        await seed.job(_job("j3", design="other"))
        await seed.job(_job("j4", user="v"))
        assert await reads.count_jobs_of_design("u", "d") == 2
        assert await reads.count_jobs_of_design("v", "other") == 0

    async def test_tasks(self, reads: JobReads, seed: Seeder) -> None:
        await seed.job(_job("j1"))
        agg = _task("j1", "t0", role="aggregator", config={"role": "aggregator"}, log="tail")
        await seed.task(_task("j1", "t2", compute_id="c1", group_association={"param": "g"}))
        await seed.task(_task("j1", "t1", compute_id="c1", state="completed"))
        await seed.task(agg)
        await seed.task(_task("j2", "t1"))
        assert await reads.task("j1", "t0") == agg
        assert await reads.task("j1", "nope") is None
        tasks = await reads.tasks_of_job("j1")
        assert [(t.role, t.task_id) for t in tasks] == [
            ("aggregator", "t0"),
            ("trainer", "t1"),
            ("trainer", "t2"),
        ]
        assert tasks[2].group_association == {"param": "g"}
        assert [t.task_id for t in await reads.tasks_of_job("j1", limit=2)] == ["t0", "t1"]
        assert [t.task_id for t in await reads.tasks_of_job("j1", compute_id="c1")] == ["t1", "t2"]
        assert await reads.task_keys("j1", ["t1", "t2", "t9"]) == {"t1": "key-t1", "t2": "key-t2"}
        assert await reads.terminal_tasks(["t0", "t1", "t9"]) == {"t1"}
        assert await reads.terminal_tasks([]) == set()

    async def test_jobs_on_a_compute(self, reads: JobReads, seed: Seeder) -> None:
        await seed.job(_job("j1", at=2))
        await seed.job(_job("j2", at=1, state="completed"))
        await seed.job(_job("j3", at=0))
        await seed.task(_task("j1", "a", compute_id="c1"))
        await seed.task(_task("j1", "b", compute_id="c1"))
        await seed.task(_task("j2", "a", compute_id="c1"))
        await seed.task(_task("j3", "a", compute_id="c2"))
        assert [j.job_id for j in await reads.jobs_on_compute("c1")] == ["j2", "j1"]
        assert await reads.jobs_on_compute("c9") == []

    async def test_event_log(self, reads: JobReads, seed: Seeder) -> None:
        await seed.job(_job("j1"))
        created = {"type": "job.created", "payload": {"user_id": "u"}}
        for seq, body in ((2, {"type": "task.created"}), (1, created), (3, {"type": "x"})):
            await seed.event("j1", seq, body)
        await seed.event("j2", 1, {"type": "job.created"})
        assert [e["seq"] for e in await reads.events_after("j1", 0, 10)] == [1, 2, 3]
        assert await reads.events_after("j1", 1, 1) == [{"type": "task.created", "seq": 2}]
        assert await reads.events_after("j1", 3, 10) == []
        only = await reads.events_after("j1", 0, 10, types=["x", "task.created"])
        assert [e["seq"] for e in only] == [2, 3]
        assert [e["seq"] for e in await reads.events_after("j1", 2, 10, types=["x"])] == [3]
        assert await reads.logged_owner("j2") is None
        await seed.remove_job("j1")
        assert await reads.job("j1") is None and await reads.tasks_of_job("j1") == []
        assert await reads.logged_owner("j1") == "u"  # the log outlives the job
        assert len(await reads.events_after("j1", 0, 10)) == 3


class MemorySeeder:
    def __init__(self, reads: MemoryJobReads) -> None:
        self.reads = reads

    async def job(self, job: JobRecord) -> None:
        self.reads.put_job(job)

    async def task(self, task: TaskRecord) -> None:
        self.reads.put_task(task)

    async def event(self, job_id: str, seq: int, body: dict[str, Any]) -> None:
        self.reads.log_event(job_id, seq, body)

    async def remove_job(self, job_id: str) -> None:
        self.reads.remove_job(job_id)


class MongoSeeder:
    """Writes what the controller would: its Beanie documents."""

    async def job(self, job: JobRecord) -> None:
        await JobDoc(**asdict(job)).insert()

    async def task(self, task: TaskRecord) -> None:
        await TaskDoc(**asdict(task)).insert()

    async def event(self, job_id: str, seq: int, body: dict[str, Any]) -> None:
        event_id = f"{job_id}-{seq}"
        await EventDoc(
            event_id=event_id, type=body["type"], job_id=job_id, seq=seq, body=body
        ).insert()

    async def remove_job(self, job_id: str) -> None:
        await JobDoc.find({"job_id": job_id}).delete()
        await TaskDoc.find({"job_id": job_id}).delete()


class TestMemoryJobReads(JobReadsContract):
    @pytest.fixture
    def reads(self) -> MemoryJobReads:
        return MemoryJobReads()

    @pytest.fixture
    def seed(self, reads: MemoryJobReads) -> Seeder:
        return MemorySeeder(reads)


@pytest.mark.integration
class TestMongoJobReads(JobReadsContract):
    @pytest.fixture
    async def reads(self, settings: FlameSettings) -> AsyncIterator[JobReads]:
        client = await init_db(settings, MongoJobReads.documents)
        yield MongoJobReads()
        await client.close()

    @pytest.fixture
    def seed(self, reads: JobReads) -> Seeder:
        return MongoSeeder()
