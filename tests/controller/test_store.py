"""One contract for the controller's storage ports, run against the in-memory and Mongo adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from bson import ObjectId

from flame_common.documents import ComputeDoc, TaskDoc
from flame_common.jobs_read.mongo import MongoJobReads
from flame_common.settings import FlameSettings
from flame_controller import decide as d
from flame_controller.app import open_stores
from flame_controller.broker_accounts import new_login
from flame_controller.expansion import PlannedTask
from flame_controller.memory import MemoryCatalog, MemoryJobStore
from flame_controller.mongo import MongoCatalog, MongoJobStore
from flame_controller.planning import Planner, new_keys
from flame_controller.ports import (
    Catalog,
    CommandRecord,
    DuplicateEvent,
    JobRecords,
    JobStore,
    SeqTaken,
)
from flame_controller.state import JobView, evolve
from schemas.events import EventBase, parse_event
from schemas.states import JobState
from tests.controller.conftest import MNIST_DATASET, memory_catalog, mnist, seed_example

GRACE = 2.0


class Store(JobStore, JobRecords, Protocol):
    """What the contract drives: both store ports of one adapter."""


@dataclass
class Adapters:
    store: Store
    catalog: Catalog


@dataclass
class Job:
    """A job as the controller holds it: state, planned tasks and their keys."""

    state: JobView
    events: list[EventBase]
    planned: list[PlannedTask]
    keys: dict[str, str]

    def task(self, role: str) -> str:
        return next(t.task_id for t in self.planned if t.role == role)


def _stamp(events: Sequence[EventBase], state: JobView) -> tuple[list[EventBase], JobView]:
    stamped = [e.model_copy(update={"seq": state.last_seq + i}) for i, e in enumerate(events, 1)]
    for e in stamped:
        state = evolve(state, e)
    return stamped, state


class StoreContract:
    """The cases; a subclass per adapter provides the `adapters` fixture and `add_unmanaged`."""

    @pytest.fixture
    def a(self, adapters: Adapters) -> Adapters:
        return adapters

    async def add_unmanaged(self, a: Adapters, compute_id: str) -> None:
        raise NotImplementedError

    async def _create(self, a: Adapters, job_id: str | None = None) -> Job:
        job_id = job_id or str(ObjectId())
        planner = Planner(FlameSettings(), a.catalog)
        spec, planned = await planner.plan(job_id, "alice", mnist().job_spec(job_id))
        events, folded = d.decide_folded(None, d.Create(job_id, "alice", spec, planned))
        events = [e.model_copy(update={"seq": i}) for i, e in enumerate(events, 1)]
        state = replace(folded, last_seq=len(events))
        keys = new_keys(planned)
        await a.store.create(state, events, planned, keys)
        return Job(state, events, planned, keys)

    async def _step(self, a: Adapters, job: Job, command: Any, **append: Any) -> list[EventBase]:
        events, state = _stamp(d.decide(job.state, command), job.state)
        await a.store.append(state, events, before=job.state, **append)
        job.state = state
        return events

    async def _observe(
        self, a: Adapters, job: Job, type_: str, payload: dict[str, Any], **env: Any
    ) -> list[EventBase]:
        raw = {"type": type_, "payload": payload, "job_id": job.state.job_id, "source": "test"}
        event = parse_event({**raw, **env})
        return await self._step(a, job, d.Observe(event), observed={event.id})

    # --- catalog ---------------------------------------------------------------------------------

    async def test_catalog_reads_designs_code_datasets_and_computes(self, a: Adapters) -> None:
        design = await a.catalog.design("alice", "mnist")
        assert design is not None and design.schema == mnist().schema.wire()
        assert (design.schema_revision, design.code_revision) == (1, 1)
        assert await a.catalog.design("mallory", "mnist") is None
        assert await a.catalog.code("alice", "mnist", 1) == mnist().code_zip()
        assert await a.catalog.code("alice", "mnist", 2) is None
        found = await a.catalog.datasets([MNIST_DATASET, "missing"])
        assert list(found) == [MNIST_DATASET] and found[MNIST_DATASET].compute_id == "compute-1"
        assert await a.catalog.datasets([]) == {}
        assert await a.catalog.unmanaged_computes() == frozenset()
        await self.add_unmanaged(a, "edge")
        assert await a.catalog.unmanaged_computes() == {"edge"}

    # --- create, load, records -----------------------------------------------------------------

    async def test_task_keys_are_those_of_the_jobs_tasks(self, a: Adapters) -> None:
        job, other = await self._create(a), await self._create(a)
        assert await a.store.task_keys(job.state.job_id) == job.keys
        assert set(job.keys).isdisjoint(await a.store.task_keys(other.state.job_id))
        assert await a.store.task_keys(str(ObjectId())) == {}

    async def test_state_counts_group_jobs_and_tasks_by_state(self, a: Adapters) -> None:
        jobs, tasks = await a.store.state_counts()
        job = await self._create(a)
        after_jobs, after_tasks = await a.store.state_counts()
        assert after_jobs.get("ready", 0) == jobs.get("ready", 0) + 1
        assert after_tasks.get("ready", 0) == tasks.get("ready", 0) + len(job.planned)
        await self._step(a, job, d.Start(frozenset()))
        moved, _ = await a.store.state_counts()
        assert moved.get("ready", 0) == jobs.get("ready", 0)
        assert sum(moved.values()) == sum(jobs.values()) + 1

    async def test_create_writes_log_job_and_tasks(self, a: Adapters) -> None:
        job = await self._create(a)
        job_id = job.state.job_id
        state, seen = await a.store.load(job_id)
        assert state == job.state and seen == {e.id for e in job.events}
        log = await a.store.log(job_id)
        assert [(x.event.id, x.event.seq, x.published) for x in log] == [
            (e.id, i, False) for i, e in enumerate(job.events, 1)
        ]
        record = await a.store.job(job_id)
        assert record is not None
        assert (record.user_id, record.design_id, record.state) == ("alice", "mnist", "ready")
        assert record.task_count == 2 and record.last_seq == 3 and record.deadline_at is None
        assert record.spec["designId"] == "mnist"
        tasks = {t.role: t for t in await a.store.tasks(job_id)}
        trainer = tasks["trainer"]
        assert trainer.key == job.keys[trainer.task_id] and trainer.dataset.endswith("mnist.npz")
        assert trainer.config["taskid"] == trainer.task_id and trainer.state == "ready"
        assert (trainer.log, trainer.agent_id, trainer.exit_code) == ("", "", None)
        assert [e.id for e in await a.store.pending()] == [e.id for e in job.events]
        assert await a.store.open_jobs() == [job_id]

    async def test_create_is_all_or_nothing(self, a: Adapters) -> None:
        job_id = str(ObjectId())
        planner = Planner(FlameSettings(), a.catalog)
        spec, planned = await planner.plan(job_id, "alice", mnist().job_spec(job_id))
        events, state = d.decide_folded(None, d.Create(job_id, "alice", spec, planned))
        events = [e.model_copy(update={"seq": i}) for i, e in enumerate(events, 1)]
        keys = new_keys(planned[:1])  # the second task has no key: the write fails
        with pytest.raises(KeyError):
            await a.store.create(state, events, planned, keys)
        assert await a.store.load(job_id) == (None, set())
        assert await a.store.job(job_id) is None and await a.store.tasks(job_id) == []
        assert await a.store.log(job_id) == [] and await a.store.pending() == []

    async def test_event_ids_are_unique_across_jobs(self, a: Adapters) -> None:
        first = await self._create(a)
        job_id = str(ObjectId())
        clash = [
            e.model_copy(update={"job_id": job_id}) for e in first.events
        ]  # same ids, another job
        state = replace(first.state, job_id=job_id)
        with pytest.raises(DuplicateEvent, match=first.events[0].id):
            await a.store.create(state, clash, first.planned, first.keys)
        assert await a.store.job(job_id) is None and await a.store.log(job_id) == []
        assert len(await a.store.log(first.state.job_id)) == 3  # the first job is intact

    async def test_append_of_a_logged_event_is_refused(self, a: Adapters) -> None:
        job = await self._create(a)
        again = job.events[-1].model_copy(update={"seq": 4})
        with pytest.raises(DuplicateEvent):
            await a.store.append(job.state, [again], before=job.state)
        assert len(await a.store.log(job.state.job_id)) == 3

    async def test_a_second_writer_of_a_seq_is_refused(self, a: Adapters) -> None:
        """Two writers holding the same state: the first append wins, the second's stores
        nothing (its other events neither) and says the seq is taken."""
        job = await self._create(a)
        stale = job.state
        await self._step(a, job, d.Start())
        first_log = await a.store.log(job.state.job_id)
        second, state = _stamp(d.decide(stale, d.Start()), stale)  # the same decision, anew
        with pytest.raises(SeqTaken, match=f"seq {stale.last_seq + 1} of job {stale.job_id}"):
            await a.store.append(state, second, before=stale)
        assert await a.store.log(job.state.job_id) == first_log
        record = await a.store.job(job.state.job_id)
        assert record is not None and record.last_seq == job.state.last_seq
        assert record.state == "deploying"

    # --- append and projections ------------------------------------------------------------------

    async def test_append_projects_tasks_and_job_and_keeps_seq(self, a: Adapters) -> None:
        job = await self._create(a)
        job_id, agg, trn = job.state.job_id, job.task("aggregator"), job.task("trainer")
        await self._observe(a, job, "agent.registered", {"agent_id": "a1"}, task_id=agg)
        started = await self._step(a, job, d.Start())
        record = await a.store.job(job_id)
        assert record is not None and record.state == "deploying"
        assert record.started_at is not None and record.last_seq == job.state.last_seq
        max_run_time = timedelta(seconds=job.state.spec.max_run_time)
        assert record.deadline_at == record.started_at + max_run_time
        report = {"state": "running", "log_tail": "epoch 1"}
        running = await self._observe(a, job, "task.status_changed", report, task_id=trn)
        await self._observe(a, job, "task.status_changed", {"state": "running"}, task_id=agg)
        tasks = {t.task_id: t for t in await a.store.tasks(job_id)}
        assert (tasks[trn].state, tasks[trn].log) == ("running", "epoch 1")
        assert tasks[agg].agent_id == "a1"
        await self._observe(a, job, "task.status_changed", {"state": "completed"}, task_id=trn)
        tasks = {t.task_id: t for t in await a.store.tasks(job_id)}
        assert (tasks[trn].state, tasks[trn].log) == ("completed", "epoch 1")  # log kept
        log = await a.store.log(job_id)
        assert [x.event.seq for x in log] == list(range(1, len(log) + 1))
        published = {x.event.id for x in log if x.published}
        assert running[0].id in published and started[0].id not in published
        state, seen = await a.store.load(job_id)
        assert state == job.state and len(seen) == len(log)

    async def test_a_batch_projects_each_tasks_changes_in_their_order(self, a: Adapters) -> None:
        """Equal changes of several tasks are written together, yet never ahead of an earlier
        change of one of those tasks (A completed, B running, B completed like A: B is done)."""
        job = await self._create(a)
        agg, trn = job.task("aggregator"), job.task("trainer")
        await self._step(a, job, d.Start())
        done = {"state": "completed", "exit_code": 0, "log_tail": "bye\n", "log_size": 4}
        reports = [
            (agg, {"state": "running"}),
            (agg, done),
            (trn, {"state": "running"}),
            (trn, done),
        ]
        state, batch = job.state, []
        for task_id, payload in reports:
            raw = {"type": "task.status_changed", "payload": payload, "task_id": task_id}
            event = parse_event({**raw, "job_id": state.job_id, "source": "test"})
            events, state = _stamp(d.decide(state, d.Observe(event)), state)
            batch.extend(events)
        await a.store.append(state, batch, before=job.state, observed={e.id for e in batch})
        tasks = {t.task_id: t for t in await a.store.tasks(job.state.job_id)}
        assert (tasks[agg].state, tasks[trn].state) == ("completed", "completed")

    async def test_job_projection_is_rewritten_only_when_a_job_field_changes(
        self, a: Adapters
    ) -> None:
        job = await self._create(a)
        await self._step(a, job, d.Start())
        before = await a.store.job(job.state.job_id)
        trn = job.task("trainer")
        await self._observe(a, job, "agent.registered", {"agent_id": "a2"}, task_id=trn)
        after = await a.store.job(job.state.job_id)
        assert before is not None and after == before  # last_seq too: a task-only change

    async def test_pending_and_mark_published_are_the_outbox(self, a: Adapters) -> None:
        one, two = await self._create(a), await self._create(a)
        pending = await a.store.pending()
        by_job = sorted([one, two], key=lambda j: j.state.job_id)
        assert [e.id for e in pending] == [e.id for j in by_job for e in j.events]
        await a.store.mark_published([e.id for e in one.events[:2]])
        assert [e.id for e in await a.store.pending()] == [
            e.id for j in by_job for e in j.events if e.id not in {x.id for x in one.events[:2]}
        ]
        await a.store.mark_published([e.id for e in pending])
        assert await a.store.pending() == []

    async def test_a_command_key_is_claimed_once_and_keeps_its_result(self, a: Adapters) -> None:
        job = await self._create(a)
        first = CommandRecord("alice/k1", "job.create", job.state.job_id, "corr-1")
        assert await a.store.claim_command(first) is None
        again = CommandRecord("alice/k1", "job.create", "another", "corr-2")
        assert await a.store.claim_command(again) == first  # the first claim wins, unfinished
        await a.store.finish_command("alice/k1", {"id": job.state.job_id, "state": "ready"})
        stored = await a.store.claim_command(again)
        assert stored == replace(first, result={"id": job.state.job_id, "state": "ready"})
        assert await a.store.claim_command(replace(first, key="bob/k1")) is None  # per user
        # committed: the job's log holds events with the command's correlation id
        events, state = _stamp(d.decide(job.state, d.Start(frozenset()), "corr-start"), job.state)
        await a.store.append(state, events, before=job.state)
        assert await a.store.committed(job.state.job_id, "corr-start")
        assert not await a.store.committed(job.state.job_id, "corr-other")
        assert not await a.store.committed("0" * 24, "corr-start")

    async def test_due_deadlines_and_open_jobs(self, a: Adapters) -> None:
        idle, active, done = await self._create(a), await self._create(a), await self._create(a)
        await self._step(a, active, d.Start())
        await self._step(a, done, d.Start())
        for role in ("trainer", "aggregator"):
            payload = {"state": "completed"}
            await self._observe(a, done, "task.status_changed", payload, task_id=done.task(role))
        assert done.state.state is JobState.COMPLETED
        started = active.state.started_at
        assert started is not None
        deadline = started + timedelta(seconds=active.state.spec.max_run_time)
        assert await a.store.due(deadline - timedelta(seconds=1)) == []
        assert await a.store.due(deadline) == [active.state.job_id]
        assert sorted(await a.store.open_jobs()) == sorted([idle.state.job_id, active.state.job_id])

    async def test_update_replaces_tasks_and_delete_keeps_only_the_log(self, a: Adapters) -> None:
        job = await self._create(a)
        old = {t.task_id for t in await a.store.tasks(job.state.job_id)}
        planner = Planner(FlameSettings(), a.catalog)
        spec = mnist().job_spec(job.state.job_id).model_copy(update={"max_run_time": 99})
        spec, planned = await planner.plan(job.state.job_id, "alice", spec)
        keys = new_keys(planned)
        await self._step(a, job, d.Update(spec, planned), planned=planned, keys=keys)
        tasks = await a.store.tasks(job.state.job_id)
        assert {t.task_id for t in tasks} == {t.task_id for t in planned}
        assert {t.task_id for t in tasks}.isdisjoint(old)
        assert all(t.key == keys[t.task_id] for t in tasks)
        record = await a.store.job(job.state.job_id)
        assert record is not None and record.spec["maxRunTime"] == 99
        await self._step(a, job, d.Delete())
        assert await a.store.job(job.state.job_id) is None
        assert await a.store.tasks(job.state.job_id) == []
        state, _ = await a.store.load(job.state.job_id)
        assert state is not None and state.deleted
        assert job.state.job_id not in await a.store.open_jobs()

    async def test_a_rerun_resets_every_task(self, a: Adapters) -> None:
        job = await self._create(a)
        agg, trn = job.task("aggregator"), job.task("trainer")
        await self._step(a, job, d.Start())
        await self._observe(a, job, "agent.registered", {"agent_id": "a1"}, task_id=agg)
        for task_id in (trn, agg):
            report = {"state": "completed", "log_tail": "done"}
            await self._observe(a, job, "task.status_changed", report, task_id=task_id)
        await self._step(a, job, d.Start())
        tasks = await a.store.tasks(job.state.job_id)
        assert [(t.state, t.log, t.agent_id) for t in tasks] == [("ready", "", "")] * 2

    async def test_reproject_repairs_lagging_projections(self, a: Adapters) -> None:
        job = await self._create(a)
        events, state = _stamp(d.decide(job.state, d.Start()), job.state)
        await a.store.append(state, events, before=state)  # as if the job write was lost
        record = await a.store.job(job.state.job_id)
        assert record is not None and record.state == "ready"
        replayed, _ = await a.store.load(job.state.job_id)
        assert replayed == state
        await a.store.reproject(replayed)
        record = await a.store.job(job.state.job_id)
        assert record is not None and record.state == "deploying"
        assert record.last_seq == state.last_seq

    async def test_purge_removes_every_trace(self, a: Adapters) -> None:
        job = await self._create(a)
        await a.store.purge(job.state.job_id)
        assert await a.store.load(job.state.job_id) == (None, set())
        assert await a.store.job(job.state.job_id) is None
        assert await a.store.pending() == []

    async def test_a_broker_login_is_set_on_every_task_and_cleared(self, a: Adapters) -> None:
        job = await self._create(a)
        job_id = job.state.job_id
        login = new_login("ns", job_id, ["rabbitmq", "mqtt"])
        await a.store.set_broker_login(job_id, login)
        tasks = await a.store.tasks(job_id)
        assert {(t.broker_user, t.broker_password) for t in tasks} == {(login.user, login.password)}
        await a.store.set_broker_login(job_id, None)
        assert {(t.broker_user, t.broker_password) for t in await a.store.tasks(job_id)} == {
            ("", "")
        }

    async def test_a_start_stores_the_jobs_login_on_every_task_with_its_events(
        self, a: Adapters
    ) -> None:
        job = await self._create(a)
        job_id = job.state.job_id
        login = new_login("ns", job_id, ["rabbitmq"])
        await self._step(a, job, d.Start(), login=login)
        tasks = await a.store.tasks(job_id)
        assert {(t.state, t.broker_user, t.broker_password) for t in tasks} == {
            ("ready", login.user, login.password)
        }
        # a login with events that hold no start is stored all the same
        again = new_login("ns", job_id, ["rabbitmq"])
        await self._observe(
            a, job, "agent.registered", {"agent_id": "a1"}, task_id=tasks[0].task_id
        )
        await self._step(a, job, d.Stop(), login=again)
        tasks = await a.store.tasks(job_id)
        assert {t.broker_password for t in tasks} == {again.password}


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def adapters(self) -> Adapters:
        return Adapters(MemoryJobStore(GRACE), memory_catalog(mnist()))

    async def add_unmanaged(self, a: Adapters, compute_id: str) -> None:
        assert isinstance(a.catalog, MemoryCatalog)
        a.catalog.add_compute(compute_id, managed=False)


@pytest.mark.integration
class TestMongoStore(StoreContract):
    @pytest.fixture
    async def adapters(self, db: None) -> AsyncIterator[Adapters]:
        await seed_example(mnist())
        yield Adapters(MongoJobStore(GRACE), MongoCatalog())

    async def add_unmanaged(self, a: Adapters, compute_id: str) -> None:
        await ComputeDoc(compute_id=compute_id, managed=False).insert()

    async def test_the_apiserver_reads_the_brokers_a_login_is_for(self, a: Adapters) -> None:
        job = await self._create(a)
        job_id, task_id = job.state.job_id, job.task("trainer")
        reads = MongoJobReads()
        await a.store.set_broker_login(job_id, new_login("ns", job_id, ["mqtt", "rabbitmq"]))
        task = await reads.task(job_id, task_id)
        assert task is not None and task.broker_sorts == ("mqtt", "rabbitmq")
        await a.store.set_broker_login(job_id, None)
        task = await reads.task(job_id, task_id)
        assert task is not None and (task.broker_user, task.broker_sorts) == ("", ())
        # a login stored before logins named their brokers was RabbitMQ's
        await TaskDoc.get_pymongo_collection().update_many(
            {"job_id": job_id},
            {
                "$set": {"broker_user": "ns.job.x", "broker_password": "p"},
                "$unset": {"broker_sorts": ""},
            },
        )
        task = await reads.task(job_id, task_id)
        assert task is not None and task.broker_sorts == ("rabbitmq",)


async def test_the_composition_root_builds_the_configured_adapters(tmp_path: Path) -> None:
    settings = FlameSettings(home=tmp_path, controller_store="memory")
    async with open_stores(settings) as stores:
        assert isinstance(stores.jobs, MemoryJobStore)
        assert isinstance(stores.catalog, MemoryCatalog)


@pytest.mark.integration
async def test_the_composition_root_connects_mongo_by_default(settings: FlameSettings) -> None:
    async with open_stores(settings) as stores:
        assert isinstance(stores.jobs, MongoJobStore)
        assert await stores.jobs.open_jobs() == []
