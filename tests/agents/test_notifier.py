"""Notifier: registration key check, delivery to late agents, restarts, lost agents, clean-up.

Silence is timed on the `clock` fixture (a fake clock): a test moves it past the heartbeat
timeout instead of sleeping, and proves that nothing was published with a later positive signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest

from flame_common import amqp
from flame_common.bus import names
from flame_common.documents import TaskDoc
from flame_common.proofs import service_proof, task_proof
from flame_common.settings import FlameSettings
from flame_notifier.app import Notifier, running_notifier
from flame_notifier.documents import AgentDoc, Presence
from flame_sdk.localbroker import local_rabbitmq
from schemas.events import (
    AgentHeartbeat,
    AgentHeartbeatEvent,
    AgentLostEvent,
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
from tests.agents.helpers import publish
from tests.support.clock import FakeClock
from tests.support.tap import EventTap
from tests.support.wait import eventually

pytestmark = pytest.mark.integration


async def seed_task(job_id: str, task_id: str, key: str = "k3y") -> None:
    await TaskDoc(job_id=job_id, task_id=task_id, role="trainer", key=key).insert()


class FakeAgent:
    """Speaks the agent side of the protocol (register, heartbeat, read the inbox)."""

    def __init__(self, settings: FlameSettings, job_id: str, task_id: str, key: str) -> None:
        self.settings, self.job_id, self.task_id, self.key = settings, job_id, task_id, key
        self.agent_id = f"fake-{uuid.uuid4().hex[:6]}"
        self.inbox: asyncio.Queue[EventBase] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def connected(self, *, consume: bool = True) -> AsyncIterator[FakeAgent]:
        connection = await amqp.connect(self.settings, name="fake-agent")
        async with connection:
            self.channel = await connection.channel()
            await amqp.notifier_inbox(self.channel, self.settings)
            if consume:
                queue = await amqp.agent_inbox(self.channel, self.settings, self.task_id)
                await queue.consume(self._on, no_ack=True)
            yield self

    async def _on(self, message: Any) -> None:
        await self.inbox.put(parse_event(message.body))

    async def send(self, event: EventBase, key: str | None = None) -> None:
        message = amqp.event_message(
            event, proof=task_proof(self.key if key is None else key, event)
        )
        route = names(self.settings).queue(amqp.NOTIFIER_INBOX)
        await self.channel.default_exchange.publish(message, routing_key=route)

    async def register(self, key: str | None = None) -> None:
        await self.send(self.registered(self.agent_id), key)

    def registered(self, agent_id: str) -> AgentRegisteredEvent:
        payload = AgentRegistered(agent_id=agent_id)
        return AgentRegisteredEvent(payload=payload, job_id=self.job_id, task_id=self.task_id)

    async def heartbeat(self) -> None:
        payload = AgentHeartbeat(agent_id=self.agent_id)
        await self.send(
            AgentHeartbeatEvent(payload=payload, job_id=self.job_id, task_id=self.task_id)
        )

    async def next(self, timeout: float = 10.0) -> EventBase:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def handled(self, tap: EventTap, marker_task: str) -> None:
        """Wait until the notifier handled everything this agent sent so far: a new agent for
        `marker_task` registers through the same channel (the inbox is handled in order) and its
        `agent.registered` is awaited."""
        marker = f"marker-{uuid.uuid4().hex[:6]}"
        await self.send(
            AgentRegisteredEvent(
                payload=AgentRegistered(agent_id=marker), job_id=self.job_id, task_id=marker_task
            )
        )
        await tap.wait_for(AgentRegisteredEvent, lambda e: e.payload.agent_id == marker)


async def no_loss_after_a_sweep(
    notifier: Notifier, agent: FakeAgent, tap: EventTap, marker_task: str
) -> None:
    """Sweep now, then prove no `agent.lost` of `agent`'s task went out: a registration handled
    after the sweep reached the tap, and no loss came before it."""
    await notifier.sweep()
    await agent.handled(tap, marker_task)
    assert tap.of(AgentLostEvent, lambda e: e.task_id == agent.task_id) == []


async def queue_depth(settings: FlameSettings, queue: str) -> int | None:
    """Messages ready in `queue`, None when it does not exist."""
    connection = await amqp.connect(settings, name="test-queue-depth")
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return None
        return declared.declaration_result.message_count or 0


def assigned(job_id: str, task_id: str) -> EventBase:
    return TaskAssignedEvent(
        payload=TaskAssigned(agent_id=""), job_id=job_id, task_id=task_id, source="controller"
    )


def registered_in(task_id: str) -> Callable[[AgentRegisteredEvent], bool]:
    return lambda e: e.task_id == task_id


async def test_registration_needs_the_task_key(settings, db, notifier, tap: EventTap):
    await seed_task("j1", "t1", key="right")
    await seed_task("j1", "m1", key="right")
    agent = FakeAgent(settings, "j1", "t1", "right")
    async with agent.connected():
        await agent.register(key="wrong")
        await agent.send(agent.registered("other"), key="")
        await agent.register()
        event = await tap.wait_for(AgentRegisteredEvent)
        assert event.task_id == "t1" and event.payload.agent_id == agent.agent_id
        assert event.source == "notifier"
        await agent.register()  # a duplicate registration publishes nothing new
        await agent.handled(tap, "m1")
    assert len(tap.of(AgentRegisteredEvent, registered_in("t1"))) == 1
    doc = await AgentDoc.find_one({"task_id": "t1"})
    assert doc is not None and doc.agent_id == agent.agent_id and doc.presence == Presence.ACTIVE


async def test_assignment_waits_for_an_agent_that_connects_late(settings, db, notifier):
    await seed_task("j2", "t2")
    await publish(settings, assigned("j2", "t2"))
    inbox = names(settings).agent_queue("t2")
    await eventually(lambda: queue_depth(settings, inbox), what=f"the assignment queued in {inbox}")
    agent = FakeAgent(settings, "j2", "t2", "k3y")  # nobody listened for t2 until now
    async with agent.connected():
        event = await agent.next()
    assert event.type == "task.assigned" and event.task_id == "t2"


async def test_delivery_goes_only_to_the_addressed_agent(settings, db, notifier):
    for t in ("ta", "tb"):
        await seed_task("j3", t)
    a, b = FakeAgent(settings, "j3", "ta", "k3y"), FakeAgent(settings, "j3", "tb", "k3y")

    def stop(task_id: str, reason: str) -> TaskStopRequestedEvent:
        return TaskStopRequestedEvent(
            payload=TaskStopRequested(reason=reason), job_id="j3", task_id=task_id
        )

    async with a.connected(), b.connected():
        await publish(settings, stop("tb", "for b"))
        event = await b.next()
        assert event.type == "task.stop_requested"
        await publish(settings, stop("ta", "for a"))  # a's first message is its own
        first = await a.next()
        assert isinstance(first, TaskStopRequestedEvent) and first.payload.reason == "for a"
        assert a.inbox.empty()


async def test_notifier_restart_keeps_assignments_and_presence(
    settings, db, tap: EventTap, clock: FakeClock
):
    await seed_task("j4", "t4")
    await seed_task("j4", "m4")
    timeout = settings.heartbeat_timeout
    agent = FakeAgent(settings, "j4", "t4", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings, clock):
            await agent.register()
            await tap.wait_for(AgentRegisteredEvent, registered_in("t4"))
        # the notifier is down: the controller's assignment must wait in the notifier's queue
        await publish(settings, assigned("j4", "t4"))
        clock.advance(timeout + 1)  # silence while the notifier is away does not count
        async with running_notifier(settings, clock) as notifier:
            queue = await amqp.agent_inbox(agent.channel, settings, "t4")
            await queue.consume(agent._on, no_ack=True)
            event = await agent.next()
            assert event.type == "task.assigned"
            # heartbeats keep the agent alive past the timeout; the restart did not re-register it
            for _ in range(3):
                clock.advance(0.6 * timeout)
                await agent.heartbeat()
                await agent.handled(tap, "m4")
            await no_loss_after_a_sweep(notifier, agent, tap, "m4")
            assert len(tap.of(AgentRegisteredEvent, registered_in("t4"))) == 1
            clock.advance(timeout + 0.1)  # the heartbeats stop
            lost = await tap.wait_for(AgentLostEvent, lambda e: e.task_id == "t4")
            assert lost.payload.agent_id == agent.agent_id


async def test_silent_agent_is_lost_and_told_to_stop(
    settings, db, notifier, tap: EventTap, clock: FakeClock
):
    await seed_task("j5", "t5")
    await seed_task("j5", "m5")
    agent = FakeAgent(settings, "j5", "t5", "k3y")
    async with agent.connected():
        await agent.register()
        await tap.wait_for(AgentRegisteredEvent, registered_in("t5"))
        clock.advance(settings.heartbeat_timeout)  # silent for the timeout, not longer: kept
        await no_loss_after_a_sweep(notifier, agent, tap, "m5")
        clock.advance(0.1)
        lost = await tap.wait_for(AgentLostEvent, lambda e: e.task_id == "t5")
        assert lost.job_id == "j5" and "heartbeat" in lost.payload.reason
        stop = await agent.next()
        assert stop.type == "task.stop_requested"
    doc = await AgentDoc.find_one({"task_id": "t5"})
    assert doc is not None and doc.presence == Presence.LOST


async def test_finished_task_and_job_are_no_longer_watched(
    settings, db, notifier, tap: EventTap, clock: FakeClock
):
    await seed_task("j6", "t6")
    await seed_task("j6", "m6")
    inbox = names(settings).agent_queue("t6")
    agent = FakeAgent(settings, "j6", "t6", "k3y")
    async with agent.connected(consume=False):
        await amqp.agent_inbox(agent.channel, settings, "t6")  # as an agent does, unread here
        await agent.register()
        await tap.wait_for(AgentRegisteredEvent, registered_in("t6"))
        await publish(
            settings,
            TaskStatusChangedEvent(
                payload=TaskStatusChanged(state=JobState.COMPLETED), job_id="j6", task_id="t6"
            ),
        )
        await eventually(lambda: "t6" not in notifier.book, what="t6 no longer watched")
        clock.advance(settings.heartbeat_timeout + 1)
        await no_loss_after_a_sweep(notifier, agent, tap, "m6")
        await publish(settings, assigned("j6", "t6"))
        await eventually(lambda: queue_depth(settings, inbox), what=f"the assignment in {inbox}")
        await publish(
            settings,
            JobStateChangedEvent(
                payload=JobStateChanged(from_state=JobState.RUNNING, to_state=JobState.COMPLETED),
                job_id="j6",
            ),
        )

        async def inbox_deleted() -> bool:
            return await queue_depth(settings, inbox) is None

        await eventually(inbox_deleted, what=f"{inbox} deleted")
    doc = await AgentDoc.find_one({"task_id": "t6"})
    assert doc is not None and doc.presence == Presence.DONE


async def test_heartbeats_stay_in_memory(settings, db, notifier, tap: EventTap, clock: FakeClock):
    await seed_task("j7", "t7")
    await seed_task("j7", "m7")
    agent = FakeAgent(settings, "j7", "t7", "k3y")
    async with agent.connected(consume=False):
        await agent.register()
        await tap.wait_for(AgentRegisteredEvent, registered_in("t7"))
        registered = await AgentDoc.find_one({"task_id": "t7"})
        assert registered is not None
        for _ in range(3):  # 1.8 timeouts in all
            clock.advance(0.6 * settings.heartbeat_timeout)
            await agent.heartbeat()
            await agent.handled(tap, "m7")
        await no_loss_after_a_sweep(notifier, agent, tap, "m7")  # the beats were heard...
        doc = await AgentDoc.find_one({"task_id": "t7"})
    assert doc is not None and doc.last_seen == registered.last_seen  # ...and not written


async def test_an_ended_agent_cannot_come_back_after_a_restart(
    settings, db, tap: EventTap, clock: FakeClock
):
    await seed_task("j8", "t8")
    agent = FakeAgent(settings, "j8", "t8", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings, clock):
            await agent.register()
            await tap.wait_for(AgentRegisteredEvent, registered_in("t8"))
            clock.advance(settings.heartbeat_timeout + 0.1)
            await tap.wait_for(AgentLostEvent, lambda e: e.task_id == "t8")
        async with running_notifier(settings, clock):
            await agent.register()  # the same agent again: refused, still lost
            other = f"fake-{uuid.uuid4().hex[:6]}"  # a new agent for the task (sent after it)
            await agent.send(agent.registered(other))
            await tap.wait_for(AgentRegisteredEvent, lambda e: e.payload.agent_id == other)
            assert len(tap.of(AgentRegisteredEvent, registered_in("t8"))) == 2
            doc = await AgentDoc.find_one({"task_id": "t8"})
            assert doc is not None and doc.agent_id == other
            assert doc.presence == Presence.ACTIVE


async def test_a_replaced_agent_cannot_take_its_task_back(
    settings, db, tap: EventTap, clock: FakeClock
):
    """Whatever order registrations arrive in: once another agent took the task over, the one
    it replaced is refused (here after a restart, as a lost agent's late registration would)."""
    await seed_task("j10", "t10")
    agent = FakeAgent(settings, "j10", "t10", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings, clock):
            await agent.register()
            await tap.wait_for(AgentRegisteredEvent, registered_in("t10"))
            other = f"fake-{uuid.uuid4().hex[:6]}"
            await agent.send(agent.registered(other))
            await tap.wait_for(AgentRegisteredEvent, lambda e: e.payload.agent_id == other)
        async with running_notifier(settings, clock):
            await agent.register()  # the replaced one: refused
            third = f"fake-{uuid.uuid4().hex[:6]}"  # sent after it, so handled once it was
            await agent.send(agent.registered(third))
            await tap.wait_for(AgentRegisteredEvent, lambda e: e.payload.agent_id == third)
            assert len(tap.of(AgentRegisteredEvent, registered_in("t10"))) == 3
            doc = await AgentDoc.find_one({"task_id": "t10"})
            assert doc is not None and doc.agent_id == third
            assert doc.retired == [agent.agent_id, other]


async def test_a_loss_announced_as_the_notifier_stops_still_bars_the_agent(
    settings, db, tap: EventTap, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """The notifier stops while publishing agent.lost (the event is out, its confirm not back):
    the agent stays lost for the next notifier."""
    publish_event = Notifier.publish

    async def stuck_after_sending(self: Notifier, event: Any) -> None:
        await publish_event(self, event)
        if isinstance(event, AgentLostEvent):
            await asyncio.Event().wait()  # cancelled by the stop

    await seed_task("j9", "t9")
    agent = FakeAgent(settings, "j9", "t9", "k3y")
    async with agent.connected(consume=False):
        monkeypatch.setattr(Notifier, "publish", stuck_after_sending)
        async with running_notifier(settings, clock):
            await agent.register()
            await tap.wait_for(AgentRegisteredEvent, registered_in("t9"))
            clock.advance(settings.heartbeat_timeout + 0.1)
            await tap.wait_for(AgentLostEvent, lambda e: e.task_id == "t9")
        monkeypatch.setattr(Notifier, "publish", publish_event)
        async with running_notifier(settings, clock):
            doc = await AgentDoc.find_one({"task_id": "t9"})
            assert doc is not None and doc.presence == Presence.LOST
            await agent.register()  # refused: still lost
            other = f"fake-{uuid.uuid4().hex[:6]}"
            await agent.send(agent.registered(other))
            await tap.wait_for(AgentRegisteredEvent, lambda e: e.payload.agent_id == other)
            assert len(tap.of(AgentRegisteredEvent, registered_in("t9"))) == 2


async def test_restart_drops_agents_of_finished_tasks(
    settings, db, tap: EventTap, clock: FakeClock
):
    await seed_task("j9", "t9")
    await seed_task("j9", "m9")
    agent = FakeAgent(settings, "j9", "t9", "k3y")
    async with agent.connected(consume=False):
        async with running_notifier(settings, clock):
            await agent.register()
            await tap.wait_for(AgentRegisteredEvent, registered_in("t9"))
            # the task ends unseen by the notifier (as while it is away): the controller saved it
            await TaskDoc.find_one({"task_id": "t9"}).update({"$set": {"state": "completed"}})
        async with running_notifier(settings, clock) as notifier:
            assert "t9" not in notifier.book
            clock.advance(settings.heartbeat_timeout + 1)
            await no_loss_after_a_sweep(notifier, agent, tap, "m9")
            doc = await AgentDoc.find_one({"task_id": "t9"})
            assert doc is not None and doc.presence == Presence.DONE


async def publish_forged(settings: FlameSettings, event: EventBase, proof: str) -> None:
    """Publish `event` on the events exchange with broker credentials but `proof` ("": none)."""
    connection = await amqp.connect(settings, name="test-forger")
    async with connection:
        channel = await connection.channel()
        exchange = await amqp.events_exchange(channel, settings)
        await exchange.publish(amqp.event_message(event, proof=proof), routing_key=event.type)


async def test_forged_controller_events_are_not_delivered(settings, db, notifier):
    await seed_task("j8", "t8", key="k8")
    agent = FakeAgent(settings, "j8", "t8", "k8")
    async with agent.connected():
        forged = assigned("j8", "t8")
        await publish_forged(settings, forged, "")
        await publish_forged(settings, forged, service_proof("not-the-secret", forged))
        await publish_forged(settings, forged, task_proof("k8", forged))  # agents cannot assign
        stop = TaskStopRequestedEvent(
            payload=TaskStopRequested(reason="proven"), job_id="j8", task_id="t8"
        )
        await publish(settings, stop)  # proven with the service secret: delivered
        first = await agent.next()
        assert isinstance(first, TaskStopRequestedEvent) and first.payload.reason == "proven"
        assert agent.inbox.empty()


async def test_registration_and_heartbeats_need_their_own_task_key(
    settings, db, notifier, tap: EventTap, clock: FakeClock
):
    await seed_task("j10", "t10", key="key-of-t10")
    await seed_task("j10", "o10", key="key-of-o10")
    await seed_task("j10", "m10", key="key-of-t10")  # the marker agent registers with our key
    agent = FakeAgent(settings, "j10", "t10", "key-of-t10")
    async with agent.connected():
        await agent.register(key="key-of-o10")  # another task's key
        await agent.handled(tap, "m10")
        assert tap.of(AgentRegisteredEvent, registered_in("t10")) == []
        await agent.register()
        await tap.wait_for(AgentRegisteredEvent, registered_in("t10"))
        beat = AgentHeartbeatEvent(
            payload=AgentHeartbeat(agent_id=agent.agent_id), job_id="j10", task_id="t10"
        )
        clock.advance(0.6 * settings.heartbeat_timeout)
        await agent.send(beat, key="key-of-o10")  # a forged beat keeps nobody alive
        await agent.send(beat.model_copy(update={"id": uuid.uuid4().hex}), key="")
        await agent.handled(tap, "m10")
        clock.advance(0.6 * settings.heartbeat_timeout)
        lost = await tap.wait_for(AgentLostEvent, lambda e: e.task_id == "t10")
        assert lost.payload.agent_id == agent.agent_id


@pytest.mark.e2e
async def test_a_broker_restart_loses_no_agent(settings, db, clock: FakeClock, tmp_path):
    """While its broker restarts the notifier hears nobody: no agent is judged then, and each
    gets a full heartbeat timeout once the notifier is connected again (a RabbitMQ node of the
    test's own, restarted with `rabbitmqctl stop_app` / `start_app`)."""
    await seed_task("j9", "t9")
    with local_rabbitmq(tmp_path / "rabbit") as rabbit:
        own = settings.model_copy(update={"rabbit_url": rabbit.amqp_url})
        async with running_notifier(own, clock) as notifier:
            agent = FakeAgent(own, "j9", "t9", "k3y")
            async with agent.connected(consume=False):
                await agent.register()
                await eventually(lambda: "t9" in notifier.book, what="the registration")
                restart = asyncio.create_task(asyncio.to_thread(rabbit.restart))
                await eventually(lambda: not notifier.hearing, timeout=30, what="deafness")
                clock.advance(10 * own.heartbeat_timeout)  # a long silence, while deaf
                await notifier.sweep()
                assert "t9" in notifier.book
                await restart
                await eventually(lambda: notifier.hearing, timeout=30, what="the reconnection")
                clock.advance(own.heartbeat_timeout - 0.1)
                await notifier.sweep()
                assert "t9" in notifier.book  # a full timeout from the reconnection
                clock.advance(0.2)
                await notifier.sweep()
                assert "t9" not in notifier.book  # then silence counts again
