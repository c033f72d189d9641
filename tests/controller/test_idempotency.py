"""Commands with an idempotency key run once per key: a retry (also after a crash between the
commit and the answer) gets the first result and creates nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryJobStore
from flame_controller.mongo import MongoCatalog, MongoJobStore
from flame_controller.ports import Catalog, JobRecords, JobStore
from flame_controller.service import Controller
from schemas import commands as c
from schemas.errors import Invalid, NotFound
from schemas.events import EventBase, JobStateChangedEvent
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import memory_catalog, mnist, seed_example

SPEC = JobSpec.model_validate(mnist().spec)


class Crash(Exception):
    """The controller process died here."""


class Memory(MemoryJobStore):
    crash_before_result = False

    async def finish_command(self, key: str, result: dict[str, Any]) -> None:
        if self.crash_before_result:
            self.crash_before_result = False
            raise Crash("died after the commit, before the result was kept")
        await super().finish_command(key, result)


class Mongo(MongoJobStore):
    crash_before_result = False

    async def finish_command(self, key: str, result: dict[str, Any]) -> None:
        if self.crash_before_result:
            self.crash_before_result = False
            raise Crash("died after the commit, before the result was kept")
        await super().finish_command(key, result)


Store = Memory | Mongo


@pytest.fixture
def memory_adapters() -> tuple[Store, Catalog]:
    return Memory(2.0), memory_catalog(mnist())


@pytest.fixture
async def mongo_adapters(db: None) -> tuple[Store, Catalog]:
    await seed_example(mnist())
    return Mongo(2.0), MongoCatalog()


@pytest.fixture(
    params=["memory_adapters", pytest.param("mongo_adapters", marks=pytest.mark.integration)]
)
def adapters(request: pytest.FixtureRequest) -> tuple[Store, Catalog]:
    adapters: tuple[Store, Catalog] = request.getfixturevalue(request.param)
    return adapters


def _controller(store: JobStore, catalog: Catalog, published: list[EventBase]) -> Controller:
    """A controller process (a new one after each crash) on the same store."""
    return Controller(FlameSettings(), store, catalog, published.extend)


async def _jobs(store: JobRecords, published: list[EventBase]) -> set[str]:
    created = {e.job_id for e in published if e.type == "job.created"}
    return {j for j in created if j and await store.job(j) is not None}


async def test_a_retried_create_makes_one_job_and_gets_the_first_answer(
    adapters: tuple[Store, Catalog],
) -> None:
    store, catalog = adapters
    published: list[EventBase] = []
    controller = _controller(store, catalog, published)
    create = c.CreateJob(user_id="alice", spec=SPEC, idempotency_key="create-1")
    first = await controller.execute(create)
    again = await controller.execute(create.model_copy(update={"correlation_id": "retry"}))
    assert again == first
    assert await _jobs(store, published) == {first["id"]}
    other = await controller.execute(create.model_copy(update={"idempotency_key": "create-2"}))
    assert other["id"] != first["id"]
    with pytest.raises(NotFound, match="design mnist"):  # keys are per user: bob's runs
        await controller.execute(create.model_copy(update={"user_id": "bob"}))


async def test_a_create_retried_after_a_crash_makes_one_job(
    adapters: tuple[Store, Catalog],
) -> None:
    store, catalog = adapters
    published: list[EventBase] = []
    create = c.CreateJob(user_id="alice", spec=SPEC, idempotency_key="crash-1")
    store.crash_before_result = True
    with pytest.raises(Crash):
        await _controller(store, catalog, published).execute(create)
    [job_id] = await _jobs(store, published)  # the job was created, its caller got no answer

    restarted = _controller(store, catalog, published)
    answer = await restarted.execute(create)  # the caller's retry, after the restart
    assert answer["id"] == job_id and answer["state"] == "ready"
    assert await _jobs(store, published) == {job_id}
    assert await restarted.execute(create) == answer  # kept this time


async def test_a_start_retried_after_a_crash_is_answered_not_refused(
    adapters: tuple[Store, Catalog],
) -> None:
    store, catalog = adapters
    published: list[EventBase] = []
    job_id = (
        await _controller(store, catalog, published).execute(
            c.CreateJob(user_id="alice", spec=SPEC)
        )
    )["id"]
    start = c.StartJob(user_id="alice", job_id=job_id, idempotency_key="start-1")
    store.crash_before_result = True
    with pytest.raises(Crash):
        await _controller(store, catalog, published).execute(start)
    answer = await _controller(store, catalog, published).execute(start)
    assert answer["id"] == job_id and answer["state"] == "deploying"  # not a Conflict
    deploying = [
        e
        for e in published
        if isinstance(e, JobStateChangedEvent) and e.payload.to_state is JobState.DEPLOYING
    ]
    assert len(deploying) == 1


async def test_a_key_used_for_another_command_is_refused(tmp_path: Path) -> None:
    store, published = Memory(2.0), []
    controller = _controller(store, memory_catalog(mnist()), published)
    job = await controller.execute(c.CreateJob(user_id="alice", spec=SPEC, idempotency_key="k"))
    with pytest.raises(Invalid, match="idempotency key 'k' was used for another command"):
        await controller.execute(c.StartJob(user_id="alice", job_id=job["id"], idempotency_key="k"))
