"""Notifier: registration key check, delivery to late agents, restarts, lost agents, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from flame_common import amqp
from flame_common.bus import names
from flame_common.documents import TaskDoc
from flame_common.settings import FlameSettings
from flame_notifier.app import KEY_HEADER, running_notifier
from flame_notifier.documents import AgentDoc, Presence
from schemas.events import (
    AgentHeartbeat,
    AgentHeartbeatEvent,
    AgentRegistered,
    AgentRegisteredEvent,
    EventBase,
    JobStateChanged,
    JobStateChangedEvent,
    TaskAssigned,
    TaskAssignedEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    TaskStopRequested,
    TaskStopRequestedEvent,
    parse_event,
)
from schemas.states import JobState
from tests.agents.helpers import EventRecorder, publish

pytestmark = pytest.mark.integration


async def seed_task(job_id: str, task_id: str, key: str = "k3y") -> None:
    await TaskDoc(job_id=job_id, task_id=task_id, role="trainer", key=key).insert()


class FakeAgent:
    """Speaks the agent side of the protocol (register, heartbeat, read the inbox)."""

    def __init__(self, settings: FlameSettings, job_id: str, task_id: str, key: str) -> None:
        self.settings, self.job_id, self.task_id, self.key = settings, job_id, task_id, key
        self.agent_id = f"fake-{uuid.uuid4().hex[:6]}"
        self.inbox: asyncio.Queue[EventBase] = asyncio.Queue()
        self._beating: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def connected(self, *, consume: bool = True) -> AsyncIterator[FakeAgent]:
        connection = await amqp.connect(self.settings, name="fake-agent")
        async with connection:
            self.channel = await connection.channel()
            await amqp.notifier_inbox(self.channel, self.settings)
            if consume:
                queue = await amqp.agent_inbox(self.channel, self.settings, self.task_id)
                await queue.consume(self._on, no_ack=True)
            try:
                yield self
            finally:
                self.stop_heartbeats()

    async def _on(self, message: Any) -> None:
        await self.inbox.put(parse_event(message.body))

    async def send(self, event: EventBase, key: str | None = None) -> None:
        message = amqp.event_message(event)
        message.headers = {KEY_HEADER: self.key if key is None else key}
        route = names(self.settings).queue(amqp.NOTIFIER_INBOX)
        await self.channel.default_exchange.publish(message, routing_key=route)

    async def register(self, key: str | None = None) -> None:
        await self.send(self.registered(self.agent_id), key)

    def registered(self, agent_id: str) -> AgentRegisteredEvent:
        payload = AgentRegistered(agent_id=agent_id)
        return AgentRegisteredEvent(payload=payload, job_id=self.job_id, task_id=self.task_id)

    def start_heartbeats(self) -> None:
        async def beat() -> None:
            while True:
                payload = AgentHeartbeat(agent_id=self.agent_id)
                await self.send(
                    AgentHeartbeatEvent(payload=payload, job_id=self.job_id, task_id=self.task_id)
                )
                await asyncio.sleep(self.settings.heartbeat_interval)

        self._beating = asyncio.create_task(beat())

    def stop_heartbeats(self) -> None:
        if self._beating is not None:
            self._beating.cancel()

    async def next(self, timeout: float = 10.0) -> EventBase:
        return await asyncio.wait_for(self.inbox.get(), timeout)


def assigned(job_id: str, task_id: str) -> EventBase:
    return TaskAssignedEvent(
        payload=TaskAssigned(agent_id=""), job_id=job_id, task_id=task_id, source="controller"
    )


async def test_registration_needs_the_task_key(settings, db, notifier, recorder: EventRecorder):
    await seed_task("j1", "t1", key="right")
    agent = FakeAgent(settings, "j1", "t1", "right")
    async with agent.connected():
        await agent.register(key="wrong")
        await agent.send(agent.registered("other"), key="")
        await agent.register()
        event = await recorder.wait_for(lambda e: e.type == "agent.registered")
        assert event.task_id == "t1" and event.payload.agent_id == agent.agent_id
        assert event.source == "notifier"
        await agent.register()  # a duplicate registration publishes nothing new
        await asyncio.sleep(0.5)
    assert len(recorder.of("agent.registered")) == 1
    doc = await AgentDoc.find_one({"task_id": "t1"})
    assert doc is not None and doc.agent_id == agent.agent_id and doc.presence == Presence.ACTIVE


async def test_assignment_waits_for_an_agent_that_connects_late(settings, db, notifier):
    await seed_task("j2", "t2")
    await publish(settings, assigned("j2", "t2"))
    await asyncio.sleep(0.5)  # nobody listens for t2 yet
    agent = FakeAgent(settings, "j2", "t2", "k3y")
    async with agent.connected():
        event = await agent.next()
    assert event.type == "task.assigned" and event.task_id == "t2"


async def test_delivery_goes_only_to_the_addressed_agent(settings, db, notifier):
    for t in ("ta", "tb"):
        await seed_task("j3", t)
    a, b = FakeAgent(settings, "j3", "ta", "k3y"), FakeAgent(settings, "j3", "tb", "k3y")
    async with a.connected(), b.connected():
        await publish(
            settings,
            TaskStopRequestedEvent(
                payload=TaskStopRequested(reason="x"), job_id="j3", task_id="tb"
            ),
        )
        event = await b.next()
        assert event.type == "task.stop_requested"
        await asyncio.sleep(0.3)
        assert a.inbox.empty()


async def test_notifier_restart_keeps_assignments_and_presence(
    settings, db, recorder: EventRecorder
):
    await seed_task("j4", "t4")
    agent = FakeAgent(settings, "j4", "t4", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings):
            await agent.register()
            agent.start_heartbeats()
            await recorder.wait_for(lambda e: e.type == "agent.registered")
        # the notifier is down: the controller's assignment must wait in the notifier's queue
        await publish(settings, assigned("j4", "t4"))
        await asyncio.sleep(settings.heartbeat_interval)
        async with running_notifier(settings):
            queue = await amqp.agent_inbox(agent.channel, settings, "t4")
            await queue.consume(agent._on, no_ack=True)
            event = await agent.next()
            assert event.type == "task.assigned"
            # heartbeats keep the agent alive past the timeout; the restart did not re-register it
            await asyncio.sleep(settings.heartbeat_timeout + 1)
            assert recorder.of("agent.lost") == []
            assert len(recorder.of("agent.registered")) == 1
            agent.stop_heartbeats()
            lost = await recorder.wait_for(lambda e: e.type == "agent.lost")
            assert lost.task_id == "t4" and lost.payload.agent_id == agent.agent_id


async def test_silent_agent_is_lost_and_told_to_stop(settings, db, notifier, recorder):
    await seed_task("j5", "t5")
    agent = FakeAgent(settings, "j5", "t5", "k3y")
    async with agent.connected():
        await agent.register()
        lost = await recorder.wait_for(lambda e: e.type == "agent.lost", timeout=10)
        assert lost.job_id == "j5" and "heartbeat" in lost.payload.reason
        stop = await agent.next()
        assert stop.type == "task.stop_requested"
    doc = await AgentDoc.find_one({"task_id": "t5"})
    assert doc is not None and doc.presence == Presence.LOST


async def test_finished_task_and_job_are_no_longer_watched(settings, db, notifier, recorder):
    await seed_task("j6", "t6")
    agent = FakeAgent(settings, "j6", "t6", "k3y")
    async with agent.connected(consume=False):
        await agent.register()
        await recorder.wait_for(lambda e: e.type == "agent.registered")
        await publish(
            settings,
            TaskStatusChangedEvent(
                payload=TaskStatusChanged(state=JobState.COMPLETED), job_id="j6", task_id="t6"
            ),
        )
        await publish(settings, assigned("j6", "t6"))  # declares t6's inbox
        await asyncio.sleep(settings.heartbeat_timeout + 1)
        assert recorder.of("agent.lost") == []
        await publish(
            settings,
            JobStateChangedEvent(
                payload=JobStateChanged(from_state=JobState.RUNNING, to_state=JobState.COMPLETED),
                job_id="j6",
            ),
        )
        await asyncio.sleep(0.5)
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await agent.channel.declare_queue(names(settings).agent_queue("t6"), passive=True)
    doc = await AgentDoc.find_one({"task_id": "t6"})
    assert doc is not None and doc.presence == Presence.DONE


async def test_heartbeats_stay_in_memory(settings, db, notifier, recorder):
    await seed_task("j7", "t7")
    agent = FakeAgent(settings, "j7", "t7", "k3y")
    async with agent.connected(consume=False):
        await agent.register()
        await recorder.wait_for(lambda e: e.type == "agent.registered")
        registered = await AgentDoc.find_one({"task_id": "t7"})
        assert registered is not None
        agent.start_heartbeats()
        await asyncio.sleep(settings.heartbeat_timeout + 1)
        assert recorder.of("agent.lost") == []  # the beats were heard...
        doc = await AgentDoc.find_one({"task_id": "t7"})
    assert doc is not None and doc.last_seen == registered.last_seen  # ...and not written


async def test_an_ended_agent_cannot_come_back_after_a_restart(settings, db, recorder):
    await seed_task("j8", "t8")
    agent = FakeAgent(settings, "j8", "t8", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings):
            await agent.register()
            await recorder.wait_for(lambda e: e.type == "agent.lost", timeout=10)
        async with running_notifier(settings):
            await agent.register()  # the same agent again: refused, still lost
            await asyncio.sleep(0.5)
            other = FakeAgent(settings, "j8", "t8", "k3y")  # a new agent for the task: accepted
            async with other.connected(consume=False):
                await other.register()
                await recorder.wait_for(
                    lambda e: e.type == "agent.registered" and e.payload.agent_id == other.agent_id
                )
            assert len(recorder.of("agent.registered")) == 2
            doc = await AgentDoc.find_one({"task_id": "t8"})
            assert doc is not None and doc.agent_id == other.agent_id
            assert doc.presence == Presence.ACTIVE


async def test_restart_drops_agents_of_finished_tasks(settings, db, recorder):
    await seed_task("j9", "t9")
    agent = FakeAgent(settings, "j9", "t9", "k3y")
    async with agent.connected(consume=False), running_notifier(settings):
        await agent.register()
        await recorder.wait_for(lambda e: e.type == "agent.registered")
        # the task ends unseen by the notifier (as while it is away): the controller saved it
        await TaskDoc.find_one({"task_id": "t9"}).update({"$set": {"state": "completed"}})
    async with running_notifier(settings) as notifier:
        assert "t9" not in notifier.book
        await asyncio.sleep(settings.heartbeat_timeout + 1)
        assert recorder.of("agent.lost") == []
        doc = await AgentDoc.find_one({"task_id": "t9"})
        assert doc is not None and doc.presence == Presence.DONE
