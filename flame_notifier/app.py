"""The notifier service: agent registrations/heartbeats in, controller events out to agents."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pydantic
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from flame_common import amqp, metrics
from flame_common.busnames import names
from flame_common.db import init_db
from flame_common.jobs_read import JobReads
from flame_common.jobs_read.mongo import MongoJobReads
from flame_common.logs import get_logger
from flame_common.proofs import event_refusal, proof_of, service_proof
from flame_common.recent import RecentIds
from flame_common.redelivery import processing
from flame_common.settings import FlameSettings
from flame_notifier.documents import AgentDoc, Presence
from flame_notifier.presence import Clock, PresenceBook
from schemas.events import (
    AgentHeartbeatEvent,
    AgentLost,
    AgentLostEvent,
    AgentRegisteredEvent,
    EventBase,
    JobStateChangedEvent,
    TaskStatusChangedEvent,
    TaskStopRequested,
    TaskStopRequestedEvent,
    parse_event,
)

log = get_logger(__name__)

CONSUMER = "notifier"
DELIVERED = ("task.assigned", "task.stop_requested")
WATCHED = (*DELIVERED, "task.status_changed", "job.state_changed")


class Notifier:
    """Presence and delivery over one channel (publisher confirms on); silence is timed on
    `clock`."""

    def __init__(
        self,
        settings: FlameSettings,
        channel: AbstractChannel,
        jobs: JobReads,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.jobs = jobs
        self.book = PresenceBook(settings.heartbeat_timeout, jobs, clock)
        self._events: AbstractExchange | None = None
        self._agents: AbstractExchange | None = None
        self._inboxes: set[str] = set()
        self.recent = RecentIds()  # ids of the controller's events handled
        self.hearing = True  # False while our broker connection is down: nobody is judged

    def deaf(self, *_: object) -> None:
        """Our broker connection is lost: heartbeats cannot reach us, silence means nothing."""
        if self.hearing:
            log.warning("broker connection lost: agents are not judged until it is back")
        self.hearing = False

    def hears_again(self, *_: object) -> None:
        """Reconnected: every active agent gets a full heartbeat timeout from now."""
        self.book.pardon()
        self.hearing = True
        log.info("broker connection back: agents get a full heartbeat timeout")

    async def setup(self) -> None:
        self._events = await amqp.events_exchange(self.channel, self.settings)
        self._agents = await amqp.agents_exchange(self.channel, self.settings)
        resumed = await self.book.load()
        log.info("notifier ready", resumed_agents=resumed)

    async def publish(self, event: EventBase) -> None:
        assert self._events is not None
        proof = service_proof(self.settings.service_secret, event)
        message = amqp.event_message(event, proof=proof)
        await self._events.publish(message, routing_key=event.type)
        metrics.published("notifier", event.type)

    async def deliver(self, event: EventBase) -> None:
        """Put `event` into its task's agent inbox (declared first: a late agent still gets it)."""
        assert self._agents is not None and event.task_id
        if event.task_id not in self._inboxes:
            await amqp.agent_inbox(self.channel, self.settings, event.task_id)
            self._inboxes.add(event.task_id)
        await self._agents.publish(amqp.event_message(event), routing_key=event.task_id)
        metrics.published("notifier", event.type)
        log.debug("delivered", type=event.type, job_id=event.job_id, task_id=event.task_id)

    # --- agent inbox -----------------------------------------------------------------------

    async def on_agent_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=True):
            event = _decode(message)
            if event is None:
                return
            metrics.consumed("notifier", event.type)
            proof = proof_of(message.headers)
            if isinstance(event, AgentHeartbeatEvent):
                if (refusal := self.book.heartbeat(event, proof)) is not None:
                    log.debug("heartbeat ignored", task_id=event.task_id, reason=refusal)
            elif isinstance(event, AgentRegisteredEvent):
                await self._register(event, proof)
            else:
                log.warning("unexpected agent message", type=event.type)

    async def _register(self, event: AgentRegisteredEvent, proof: str) -> None:
        outcome = await self.book.register(event, proof)
        if not outcome.accepted:
            log.warning("registration refused", task_id=event.task_id, reason=outcome.reason)
            return
        assert event.task_id
        self._inboxes.add(event.task_id)  # the agent declares its inbox before registering
        if outcome.changed:
            await self.publish(event.model_copy(update={"source": "notifier"}))
            log.info(
                "agent registered",
                job_id=event.job_id,
                task_id=event.task_id,
                agent_id=event.payload.agent_id,
            )

    # --- events from the controller --------------------------------------------------------

    async def on_event(self, message: AbstractIncomingMessage) -> None:
        async with processing(message, self.settings, CONSUMER):
            event = _decode(message)
            if event is not None:
                metrics.consumed("notifier", event.type)
            if event is None or not await self._proven(event, proof_of(message.headers)):
                return
            if not self.recent.claim(event.id):
                log.info("duplicate event skipped", event_id=event.id, type=event.type)
                return
            try:
                await self._handle(event)
            except BaseException:
                self.recent.release(event.id)  # its redelivery is handled again
                raise

    async def _proven(self, event: EventBase, proof: str) -> bool:
        """Whether a watched event comes from a service (or a status from its task's agent);
        an unproven one is dropped with a log line."""
        keys: dict[str, str] = {}
        if proof.startswith("task:") and event.job_id and event.task_id:
            keys = await self.book.keys.of(event.job_id, [event.task_id])
        refusal = event_refusal(event, proof, secret=self.settings.service_secret, task_keys=keys)
        if refusal is not None:
            log.warning(
                "unproven event dropped",
                type=event.type,
                job_id=event.job_id,
                task_id=event.task_id,
                reason=refusal,
            )
        return refusal is None

    async def _handle(self, event: EventBase) -> None:
        if event.type in DELIVERED:  # routed to the agent as it is
            if event.task_id and not await self._ended(event):
                await self.deliver(event)
        elif isinstance(event, TaskStatusChangedEvent):
            if event.payload.state.is_terminal and event.task_id:
                self.book.mark([event.task_id], Presence.DONE)  # saved by the next sweep
        elif (
            isinstance(event, JobStateChangedEvent)
            and event.payload.to_state.is_terminal
            and event.job_id
        ):
            await self._job_ended(event.job_id)

    async def _ended(self, event: EventBase) -> bool:
        """A `task.assigned` of a task that already ended (a late duplicate, e.g. re-published
        after a controller restart) is not delivered: it would start its agent again."""
        if event.type != "task.assigned" or not event.task_id:
            return False
        if event.task_id in self.book:  # its agent is active: the task has not ended
            return False
        if await self.jobs.terminal_tasks([event.task_id]):
            log.info("assignment of an ended task skipped", task_id=event.task_id)
            return True
        return False

    async def _job_ended(self, job_id: str) -> None:
        """Stop watching the job's agents and remove their inboxes."""
        task_ids = set(await self.book.finish_job(job_id))
        task_ids.update(t.task_id for t in await self.jobs.tasks_of_job(job_id))
        queues = names(self.settings)
        await asyncio.gather(*(self.channel.queue_delete(queues.agent_queue(t)) for t in task_ids))
        self._inboxes.difference_update(task_ids)

    # --- liveness --------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Declare silent agents lost (and ask them to stop, should they come back); nobody
        while we cannot hear them."""
        if not self.hearing:
            return
        for doc in self.book.silent():
            reason = f"no heartbeat for {self.settings.heartbeat_timeout:g} s"
            lost = AgentLostEvent(
                payload=AgentLost(agent_id=doc.agent_id, reason=reason),
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"lost/{doc.task_id}/{doc.agent_id}").hex,
                job_id=doc.job_id,
                task_id=doc.task_id,
                source="notifier",
            )
            try:
                await self.publish(lost)
            except asyncio.CancelledError:  # stopping mid-publish: it may have gone out, so a
                self.book.mark([doc.task_id], Presence.LOST)  # restart must refuse the agent
                raise
            self.book.mark([doc.task_id], Presence.LOST)
            stop = TaskStopRequestedEvent(
                payload=TaskStopRequested(reason="agent lost"),
                job_id=doc.job_id,
                task_id=doc.task_id,
                source="notifier",
            )
            await self.deliver(stop)
            log.warning("agent lost", job_id=doc.job_id, task_id=doc.task_id, agent_id=doc.agent_id)
        await self.book.flush()

    async def watch(self) -> None:
        period = max(
            0.05, min(self.settings.heartbeat_interval, self.settings.heartbeat_timeout / 4)
        )
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:  # broker or database hiccup: try again next period
                log.exception("presence sweep failed")


def _decode(message: AbstractIncomingMessage) -> EventBase | None:
    try:
        return parse_event(message.body)
    except (pydantic.ValidationError, ValueError):
        log.warning("dropping malformed message", message_id=message.message_id)
        return None


@asynccontextmanager
async def running_notifier(
    settings: FlameSettings, clock: Clock = time.monotonic
) -> AsyncIterator[Notifier]:
    """Run the notifier (database, consumers, liveness watch) until the context exits; `clock`
    times the agents' silence (tests pass a fake one)."""
    client = await init_db(settings, [*MongoJobReads.documents, AgentDoc])
    connection = await amqp.connect(settings, name="flame-notifier")
    watcher: asyncio.Task[Any] | None = None
    notifier: Notifier | None = None
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=64)
        notifier = Notifier(settings, channel, MongoJobReads(), clock)
        connection.close_callbacks.add(notifier.deaf)
        connection.reconnect_callbacks.add(notifier.hears_again)
        await notifier.setup()
        book = notifier.book
        metrics.AGENTS_LIVE.set_function(lambda: len(book))
        inbox = await amqp.notifier_inbox(channel, settings)
        events = await amqp.consumer_queue(channel, settings, CONSUMER, list(WATCHED))
        await inbox.consume(notifier.on_agent_message)
        await events.consume(notifier.on_event)
        watcher = asyncio.create_task(notifier.watch())
        yield notifier
    finally:
        if watcher is not None:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
        if notifier is not None:
            with suppress(Exception):  # what is not saved now is corrected on the next start
                await notifier.book.flush()
        await connection.close()
        await client.close()
