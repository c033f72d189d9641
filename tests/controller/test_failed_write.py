"""A write that fails after the events were stored: they are projected and published later, when
the redelivered cause comes back (already a duplicate) or, without it, on the next timer pass."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryJobStore
from flame_controller.service import Controller
from schemas import commands as c
from schemas.events import EventBase, JobStateChangedEvent, TaskStatusChanged
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import memory_catalog, mnist
from tests.controller.harness import event


class StoreFailingAfterTheLog(MemoryJobStore):
    """Appends the events, then fails before the projections (the database went away)."""

    failures = 0

    async def append(
        self,
        state: Any,
        events: Sequence[EventBase],
        *,
        observed: AbstractSet[str] = frozenset(),
        **projection: Any,
    ) -> None:
        if self.failures:
            self.failures -= 1
            self._check_new(events)
            self._add(events, observed=observed)  # the log write went through...
            raise ConnectionError("injected: projection write failed")  # ...the rest did not
        await super().append(state, events, observed=observed, **projection)


@pytest.fixture
def settings(tmp_path: Path) -> FlameSettings:
    return FlameSettings(home=tmp_path, namespace="memory", controller_store="memory")


async def _running_job(
    settings: FlameSettings,
) -> tuple[Controller, StoreFailingAfterTheLog, list[EventBase], str, str]:
    store = StoreFailingAfterTheLog(settings.stop_grace_seconds)
    published: list[EventBase] = []
    controller = Controller(settings, store, memory_catalog(mnist()), published.extend)
    spec = JobSpec.model_validate(mnist().spec)
    job_id = str((await controller.execute(c.CreateJob(user_id="alice", spec=spec)))["id"])
    await controller.execute(c.StartJob(user_id="alice", job_id=job_id))
    await store.mark_published([e.id for e in published])  # as the relay would have
    task_id = (await store.tasks(job_id))[0].task_id
    return controller, store, published, job_id, task_id


def _running(published: list[EventBase]) -> list[EventBase]:
    return [
        e
        for e in published
        if isinstance(e, JobStateChangedEvent) and e.payload.to_state is JobState.RUNNING
    ]


async def test_a_redelivered_cause_publishes_what_the_failed_write_stored(
    settings: FlameSettings,
) -> None:
    controller, store, published, job_id, task_id = await _running_job(settings)
    report = event(
        "task.status_changed",
        TaskStatusChanged(state=JobState.RUNNING),
        job_id=job_id,
        task_id=task_id,
    )
    store.failures = 1
    with pytest.raises(ConnectionError):
        await controller.observe(job_id, [report])
    assert _running(published) == []  # stored in the log, not published, not projected
    assert [e.event.id for e in await store.log(job_id) if not e.published] != []

    await controller.observe(job_id, [report])  # the consumer's redelivery: a duplicate now
    assert len(_running(published)) == 1
    job = await store.job(job_id)
    assert job is not None and job.state == "running"
    assert {t.state for t in await store.tasks(job_id) if t.task_id == task_id} == {"running"}


async def test_without_a_redelivery_the_timer_pass_publishes_it(settings: FlameSettings) -> None:
    controller, store, published, job_id, _ = await _running_job(settings)
    store.failures = 1
    with pytest.raises(ConnectionError):
        await controller.execute(c.StopJob(user_id="alice", job_id=job_id))
    assert [e for e in published if e.type == "task.stop_requested"] == []

    await controller.settle()  # what run_timers does every pass
    stopping = [
        e
        for e in published
        if isinstance(e, JobStateChangedEvent) and e.payload.to_state is JobState.STOPPING
    ]
    assert len(stopping) == 1
    assert [e for e in published if e.type == "task.stop_requested"] != []
    job = await store.job(job_id)
    assert job is not None and job.state == "stopping"
    await controller.settle()  # settled once: nothing published twice
    assert len([e for e in published if e.type == "job.state_changed"]) == len(
        {e.id for e in published if e.type == "job.state_changed"}
    )
