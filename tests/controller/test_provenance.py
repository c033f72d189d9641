"""Forged events and commands on the live controller (RabbitMQ + nx-27017): published with broker
credentials but without the right proof, they are not folded (dead-lettered) or not run
(`forbidden`); the proven ones next to them are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from flame_common import amqp
from flame_common.bus import names
from flame_common.deadletters import peek
from flame_common.documents import JobDoc
from flame_common.proofs import PROOF_HEADER, command_proof, service_proof, task_proof
from flame_common.settings import FlameSettings
from flame_controller.ports import TaskRecord
from schemas import commands as c
from schemas.commands import CommandReply
from schemas.events import (
    AgentRegistered,
    EventBase,
    TaskAssignedEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
)
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import Bus, mnist, seed_example
from tests.controller.harness import Live, event
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def live(settings: FlameSettings, db: None, bus: Bus) -> AsyncIterator[Live]:
    await seed_example(mnist())
    async with Live(settings, bus).running() as h:
        yield h


async def send(settings: FlameSettings, e: EventBase, proof: str) -> EventBase:
    """Publish `e` on the events exchange as anyone holding broker credentials could."""
    connection = await amqp.connect(settings, name="test-forger")
    async with connection:
        channel = await connection.channel()
        exchange = await amqp.events_exchange(channel, settings)
        await exchange.publish(amqp.event_message(e, proof=proof), routing_key=e.type)
    return e


async def started_job(h: Live) -> tuple[str, dict[str, TaskRecord]]:
    spec = JobSpec.model_validate(mnist().spec)
    job = (await h.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()
    assert isinstance(job, dict)
    job_id = str(job["id"])
    assert (await h.call(c.StartJob(user_id="alice", job_id=job_id))).ok
    return job_id, {t.role: t for t in await h.records.tasks(job_id)}


async def dead_lettered(settings: FlameSettings, ids: set[str]) -> bool:
    return ids <= {d.message_id for d in await peek(settings, 100)}


async def test_forged_status_is_not_folded(live: Live, settings: FlameSettings) -> None:
    job_id, tasks = await started_job(live)
    trn, agg = tasks["trainer"], tasks["aggregator"]

    def failed() -> TaskStatusChangedEvent:
        payload = TaskStatusChanged(state=JobState.FAILED, reason="forged")
        return TaskStatusChangedEvent(payload=payload, job_id=job_id, task_id=trn.task_id)

    forged = [
        await send(settings, failed(), ""),
        await send(settings, e := failed(), task_proof("not-the-key", e)),
        await send(settings, e := failed(), task_proof(agg.key, e)),  # another task's key
        await send(settings, e := failed(), service_proof("not-the-secret", e)),
        await send(settings, failed(), task_proof(trn.key, failed())),  # another event's proof
    ]
    running = TaskStatusChangedEvent(
        payload=TaskStatusChanged(state=JobState.RUNNING), job_id=job_id, task_id=trn.task_id
    )
    await send(settings, running, task_proof(trn.key, running))  # its agent: folded

    async def trainer_running() -> bool:
        states = {t.task_id: t.state for t in await live.records.tasks(job_id)}
        return states[trn.task_id] == "running"

    await eventually(trainer_running, what="the proven status folded")
    forged_ids = {e.id for e in forged}
    await eventually(lambda: dead_lettered(settings, forged_ids), what="forgeries dead-lettered")
    logged = {x.event.id for x in await live.records.log(job_id)}
    assert running.id in logged and not forged_ids & logged
    job = await live.records.job(job_id)
    assert job is not None and job.state != "failed"


async def test_forged_registration_gets_no_assignment(live: Live, settings: FlameSettings) -> None:
    job_id, tasks = await started_job(live)
    trn, agg = tasks["trainer"], tasks["aggregator"]
    fake = event("agent.registered", AgentRegistered(agent_id="squatter"), job_id=job_id)
    fake = fake.model_copy(update={"task_id": agg.task_id})
    await send(settings, fake, "")
    real = event("agent.registered", AgentRegistered(agent_id="agent-trn"), job_id=job_id)
    real = real.model_copy(update={"task_id": trn.task_id})
    await send(settings, real, task_proof(trn.key, real))
    await live.seen.wait_for(TaskAssignedEvent, lambda e: e.task_id == trn.task_id)
    assert live.seen.of(TaskAssignedEvent, lambda e: e.task_id == agg.task_id) == []
    by_id = {t.task_id: t for t in await live.records.tasks(job_id)}
    assert by_id[agg.task_id].agent_id == "" and by_id[trn.task_id].agent_id == "agent-trn"
    await eventually(lambda: dead_lettered(settings, {fake.id}), what="the forgery dead-lettered")


async def call_with(bus: Bus, cmd: c.CreateJob | c.StopJob, proof: str | None) -> CommandReply:
    """Send a command to the controller's queue with `proof` (None: no header)."""
    body = json.dumps(cmd.model_dump(mode="json")).encode()
    msg = await bus.broker.request(
        body,
        queue=names(bus.settings).command_queue,
        timeout=10,
        content_type="application/json",
        headers=None if proof is None else {PROOF_HEADER: proof},
    )
    return CommandReply.model_validate_json(msg.body)


async def test_forged_commands_are_refused(live: Live, settings: FlameSettings, bus: Bus) -> None:
    spec = JobSpec.model_validate(mnist().spec)
    create = c.CreateJob(user_id="mallory", spec=spec)
    for proof in (None, "", command_proof("not-the-secret", b"{}"), "service:00"):
        reply = await call_with(bus, create, proof)
        assert not reply.ok and reply.error is not None and reply.error.code == "forbidden"
    assert await JobDoc.find({"user_id": "mallory"}).count() == 0

    job_id, _ = await started_job(live)
    stop = c.StopJob(user_id="alice", job_id=job_id)
    reply = await call_with(bus, stop, command_proof("not-the-secret", b"{}"))
    assert not reply.ok and reply.error is not None and reply.error.code == "forbidden"
    job = await live.records.job(job_id)
    assert job is not None and job.state == "deploying"
    assert (await live.call(stop)).ok  # the apiserver's proof: run
    job = await live.records.job(job_id)
    assert job is not None and job.state != "deploying"
