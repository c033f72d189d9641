"""Consumers are idempotent by event id: a repeated or late controller event has one effect
(deployer: one worker, none for a job that ended; notifier: one delivery, none to an ended task)."""

from __future__ import annotations

from typing import Any

import pytest

from flame_common.documents import JobDoc, TaskDoc
from flame_common.recent import RecentIds
from flame_common.settings import FlameSettings
from flame_controller.deployers.app import running_deployer
from flame_controller.deployers.base import Deployer, WorkerSpec
from schemas.events import (
    TaskStopRequested,
    TaskStopRequestedEvent,
    WorkerCreatedEvent,
    WorkerReleasedEvent,
)
from tests.agents.helpers import publish, requested
from tests.agents.test_notifier import FakeAgent, assigned, seed_task
from tests.support.tap import EventTap


class CountingDeployer(Deployer):
    """Records the workers it was asked to start and stop (no processes)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.stopped: list[tuple[str, str]] = []

    async def start(self, spec: WorkerSpec) -> str:
        self.started.append((spec.job_id, spec.task_id))
        return f"w-{spec.task_id}-{len(self.started)}"

    async def stop(self, job_id: str, task_ids: list[str]) -> None:
        self.stopped.extend((job_id, t) for t in task_ids)

    async def close(self) -> None:
        pass


async def _job(job_id: str, state: str, tasks: dict[str, str]) -> None:
    await JobDoc(
        job_id=job_id, user_id="alice", name=job_id, design_id="d", spec={}, state=state
    ).insert()
    for task_id, task_state in tasks.items():
        await TaskDoc(
            job_id=job_id, task_id=task_id, role="trainer", key=f"k-{task_id}", state=task_state
        ).insert()


@pytest.mark.integration
async def test_a_repeated_worker_request_starts_one_worker(
    settings: FlameSettings, db: Any, tap: EventTap
) -> None:
    await _job("jd", "deploying", {"da": "ready", "db": "ready"})
    request = requested("jd", ["da", "db"])
    deployer = CountingDeployer()
    async with running_deployer(settings, register=False, deployer=deployer):
        for _ in range(3):  # redelivered, re-published after a controller restart
            await publish(settings, request)
        await tap.wait_count(WorkerCreatedEvent, 2)
        # positive signal that the repeats were handled: a later request's worker is created
        await _job("jm", "running", {"dm": "ready"})
        await publish(settings, requested("jm", ["dm"]))
        await tap.wait_for(WorkerCreatedEvent, lambda e: e.task_id == "dm")
    assert sorted(deployer.started) == [("jd", "da"), ("jd", "db"), ("jm", "dm")]
    assert len(tap.of(WorkerCreatedEvent, lambda e: e.job_id == "jd")) == 2


@pytest.mark.integration
async def test_a_late_worker_request_after_the_release_starts_no_worker(
    settings: FlameSettings, db: Any, tap: EventTap
) -> None:
    await _job("jl", "completed", {"la": "completed", "lb": "terminated"})
    await _job("jr", "running", {"ra": "completed", "rb": "ready"})
    deployer = CountingDeployer()
    async with running_deployer(settings, register=False, deployer=deployer):
        await publish(settings, requested("jl", ["la", "lb"], type_="worker.released"))
        await publish(settings, requested("jl", ["la", "lb"]))  # arrives after the release
        await publish(settings, requested("jr", ["ra", "rb"]))  # one task already ended
        await tap.wait_for(WorkerCreatedEvent, lambda e: e.task_id == "rb")
    assert deployer.started == [("jr", "rb")]
    assert deployer.stopped == [("jl", "la"), ("jl", "lb")]
    assert len(tap.of(WorkerReleasedEvent)) == 1


def _stop(job_id: str, task_id: str, reason: str) -> TaskStopRequestedEvent:
    return TaskStopRequestedEvent(
        payload=TaskStopRequested(reason=reason), job_id=job_id, task_id=task_id
    )


@pytest.mark.integration
async def test_a_repeated_assignment_is_delivered_once(
    settings: FlameSettings, db: Any, notifier: Any
) -> None:
    await seed_task("jn", "tn")
    agent = FakeAgent(settings, "jn", "tn", "k3y")
    once = assigned("jn", "tn")
    async with agent.connected():
        for _ in range(3):
            await publish(settings, once)
        await publish(settings, _stop("jn", "tn", "marker"))  # handled after the repeats
        got = [await agent.next(), await agent.next()]
        await publish(settings, _stop("jn", "tn", "second marker"))
        got.append(await agent.next())
    assert [e.type for e in got] == ["task.assigned", "task.stop_requested", "task.stop_requested"]
    assert got[0].id == once.id
    assert agent.inbox.empty()


@pytest.mark.integration
async def test_a_late_assignment_of_an_ended_task_is_not_delivered(
    settings: FlameSettings, db: Any, notifier: Any
) -> None:
    await TaskDoc(job_id="je", task_id="te", role="trainer", key="k3y", state="completed").insert()
    agent = FakeAgent(settings, "je", "te", "k3y")
    async with agent.connected():
        await publish(settings, assigned("je", "te"))
        await publish(settings, _stop("je", "te", "marker"))
        first = await agent.next()
    assert first.type == "task.stop_requested" and agent.inbox.empty()


def test_recent_ids_remember_a_bounded_number_and_forget_a_failed_one() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.claim(i) for i in "abca"] == [True, True, True, False]
    assert recent.claim("d")  # "b" was the least recently seen: forgotten
    assert len(recent) == 3 and recent.claim("b")
    recent.release("d")
    assert recent.claim("d")
