"""The agent: registers with the notifier, heartbeats, runs its assignment, reports, obeys stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pydantic
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from flame_common import amqp
from flame_common.busnames import names
from flame_common.logs import get_logger
from flame_common.proofs import task_proof
from flame_common.settings import FlameSettings
from flame_common.titles import flamelet_title, role_title, set_title
from flamelet.logship import LogSender, LogShipper
from flamelet.manifest import ManifestError, fetch_patiently
from flamelet.metrics import METRICS_FILE, MetricsRelay
from flamelet.reporter import FinalReport, publish_until_confirmed
from flamelet.runner import RoleProcess, log_tail, role_env
from flamelet.unpack import UnsafeArchive, unpack_zip
from flamelet.warm import WarmProcess
from schemas.events import (
    AgentHeartbeat,
    AgentHeartbeatEvent,
    AgentRegistered,
    AgentRegisteredEvent,
    Envelope,
    MetricsRecord,
    TaskAssignedEvent,
    TaskMetrics,
    TaskMetricsEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    TaskStopRequestedEvent,
    parse_event,
)
from schemas.states import JobState
from schemas.task import FINAL_LOG_FLUSH

log = get_logger(__name__)

INBOX_DELETE = 2.0  # seconds an ending agent gives the broker to delete its inbox
METRICS_DRAIN = 10.0  # seconds an ending task gives its last metrics to reach the broker
STOPPED_FLUSH = 1.0  # seconds a stopped task gives the rest of its output (else FINAL_LOG_FLUSH)


@dataclass(frozen=True)
class LogEnd:
    """The role's output at its exit: its size, and where the final status's tail starts in it
    when the tail is its last bytes exactly (None: unknown)."""

    size: int | None = None
    tail_at: int | None = None


@dataclass(frozen=True)
class TaskRef:
    job_id: str
    task_id: str
    key: str
    apiserver: str
    # Fetch and unpack the task at start-up, not on assignment: only for agents started once
    # their job is active (deployers), when the task's config can no longer change.
    prefetch: bool = False


class Agent:
    """One agent serving one task; `run()` returns once the final status is confirmed."""

    def __init__(
        self,
        settings: FlameSettings,
        task: TaskRef,
        work_dir: Path,
        warm: WarmProcess | None = None,
    ) -> None:
        self.settings = settings
        self.warm = warm
        self.task = task
        self.work_dir = work_dir
        self.agent_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.report = FinalReport(work_dir, task.key)
        self.done = asyncio.Event()
        self._channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._runner: asyncio.Task[None] | None = None
        self._prepared: asyncio.Task[tuple[Path, Path]] | None = None
        self._child: RoleProcess | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _envelope(self) -> Envelope:
        return Envelope(job_id=self.task.job_id, task_id=self.task.task_id, source="flamelet")

    # --- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        leftover = self.report.pending()
        if leftover is None and self.task.prefetch:  # overlaps the registration round trips
            self._prepared = self._spawn(self._prepare())
            self._prepared.add_done_callback(_retrieve)
        connection = await _connect(self.settings)
        try:
            self._channel = await connection.channel(publisher_confirms=True)
            self._events = await amqp.events_exchange(self._channel, self.settings)
            if leftover is not None:
                log.info("resending the final report of a previous run", type=leftover.type)
                await self.report.send(self._events, leftover)
                return
            await amqp.notifier_inbox(self._channel, self.settings)
            inbox = await amqp.agent_inbox(self._channel, self.settings, self.task.task_id)
            await inbox.consume(self._on_message)
            await self._register()
            self._spawn(self._heartbeats())
            await self.done.wait()
            # Nothing is sent to an agent once its task ended: its inbox goes with it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(inbox.delete(if_unused=False, if_empty=False), INBOX_DELETE)
        finally:
            for task in self._tasks:
                task.cancel()
            await connection.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self, reason: str) -> None:
        """On SIGTERM: stop the role code and report, or just leave if never assigned."""
        if self._runner is None:
            self.done.set()
            return
        await self._request_stop(reason)

    # --- notifier --------------------------------------------------------------------------

    async def _register(self) -> None:
        assert self._channel is not None
        event = AgentRegisteredEvent(
            payload=AgentRegistered(
                agent_id=self.agent_id, hostname=socket.gethostname(), pid=os.getpid()
            ),
            **self._envelope(),
        )
        message = amqp.event_message(event, proof=task_proof(self.task.key, event))
        inbox = names(self.settings).queue(amqp.NOTIFIER_INBOX)
        await publish_until_confirmed(self._channel.default_exchange, message, inbox)
        log.debug("registered", task_id=self.task.task_id, agent_id=self.agent_id)

    async def _heartbeats(self) -> None:
        assert self._channel is not None
        inbox = names(self.settings).queue(amqp.NOTIFIER_INBOX)
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)  # registering counts as a beat
            payload = AgentHeartbeat(agent_id=self.agent_id)
            beat = AgentHeartbeatEvent(payload=payload, **self._envelope())
            message = amqp.event_message(
                beat,
                persistent=False,
                ttl=self.settings.heartbeat_timeout,
                proof=task_proof(self.task.key, beat),
            )
            try:
                await self._channel.default_exchange.publish(
                    message, routing_key=inbox, timeout=self.settings.heartbeat_interval
                )
            except Exception as exc:  # broker away: the robust connection reconnects
                log.debug("heartbeat not sent", error=str(exc) or type(exc).__name__)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                event = parse_event(message.body)
            except (pydantic.ValidationError, ValueError):
                log.warning("dropping malformed inbox message")
                return
            if event.task_id != self.task.task_id:
                log.warning("dropping message for another task", task_id=event.task_id)
            elif isinstance(event, TaskAssignedEvent) and self._runner is None:
                self._runner = self._spawn(self._execute())
            elif isinstance(event, TaskStopRequestedEvent):
                self._spawn(self._request_stop(event.payload.reason or "stop requested"))

    async def _request_stop(self, reason: str) -> None:
        self._stop.set()
        if self._runner is None:  # never assigned: nothing runs, the task ends here
            self._runner = self._spawn(self._execute())
        if self._child is not None:
            log.info("stopping the role code", reason=reason)
            await self._child.stop(self.settings.stop_grace_seconds)

    # --- the task --------------------------------------------------------------------------

    async def _execute(self) -> None:
        if self._stop.is_set():
            await self._finish(JobState.TERMINATED, None, "", "stopped before start")
            return
        try:
            script, config = await (self._prepared or self._prepare())
        except (ManifestError, UnsafeArchive, OSError) as exc:
            log.error("cannot prepare the task", error=str(exc))
            await self._finish(JobState.FAILED, None, str(exc), "task preparation failed")
            return
        log_path = self.work_dir / "task.log"
        relay = MetricsRelay(
            self.work_dir / METRICS_FILE,
            self._send_metrics,
            interval=self.settings.metrics_interval,
        )
        env = role_env(os.environ, self.task.job_id, self.task.task_id, relay.path)
        title = role_title(script.parent.name, self.task.job_id, self.task.task_id)
        child = self._child = RoleProcess(script, config, log_path, env, title, self.warm)
        if self._stop.is_set():
            await self._finish(JobState.TERMINATED, None, "", "stopped before start")
            return
        try:
            await child.start()
        except OSError as exc:
            await self._finish(JobState.FAILED, None, str(exc), "cannot start the role code")
            return
        if child.stopped:  # a stop arrived while the process was being created
            await child.stop(self.settings.stop_grace_seconds)
        log.debug("role code started", pid=child.pid, script=str(script))
        await self._status(TaskStatusChanged(state=JobState.RUNNING))
        sender = LogSender(
            self.task.apiserver,
            self.task.job_id,
            self.task.task_id,
            self.task.key,
            ca_file=self.settings.ca_file,
        )
        shipper = LogShipper(log_path, sender)
        relaying = self._spawn(relay.run())
        shipping = self._spawn(shipper.run())
        code = await child.wait()
        relaying.cancel()
        shipping.cancel()
        # the last rounds' metrics go before the final status. The output's end rides on it
        # (its size, and its tail where that holds the last bytes exactly); what the tail does
        # not cover and was not shipped yet goes alongside, and the agent ends once both are
        # through (a stopped task is being waited for: the deployer kills it after its grace)
        await relay.drain(METRICS_DRAIN)
        tail = log_tail(log_path)
        size = shipper.size()
        tail_at = shipper.tail_at(tail, size) if size is not None else None
        flushing = None
        if tail_at is None or tail_at > shipper.offset:
            flush = STOPPED_FLUSH if child.stopped else FINAL_LOG_FLUSH
            flushing = self._spawn(shipper.flush(flush))
        if child.stopped:
            state, reason = JobState.TERMINATED, "stopped"
        elif code == 0:
            state, reason = JobState.COMPLETED, ""
        else:
            state, reason = JobState.FAILED, f"role code exited with code {code}"
        output = LogEnd(size, tail_at)
        await self._finish(state, code, tail, reason, output=output, flushing=flushing)

    async def _prepare(self) -> tuple[Path, Path]:
        """Fetch the manifest, unpack the code, write the config; returns (main.py, config)."""
        manifest = await fetch_patiently(
            self.task.apiserver,
            self.task.job_id,
            self.task.task_id,
            self.task.key,
            patience=self.settings.manifest_patience,
            ca_file=self.settings.ca_file,
        )
        code_dir = self.work_dir / "code"
        if code_dir.exists():
            raise OSError(f"work directory {self.work_dir} was already used by another run")
        set_title(flamelet_title(self.task.job_id, self.task.task_id, manifest.role))
        unpack_zip(manifest.code_zip, code_dir)
        script = code_dir / manifest.role / "main.py"
        if not script.is_file():
            raise ManifestError(f"code archive has no {manifest.role}/main.py")
        config = self.work_dir / "config"
        config.write_text(json.dumps({**manifest.config, "taskid": self.task.task_id}))
        return script, config

    async def _status(self, payload: TaskStatusChanged) -> None:
        assert self._events is not None
        event = TaskStatusChangedEvent(payload=payload, **self._envelope())
        message = amqp.event_message(event, proof=task_proof(self.task.key, event))
        await publish_until_confirmed(self._events, message, event.type)

    async def _send_metrics(self, records: list[MetricsRecord]) -> None:
        assert self._events is not None
        event = TaskMetricsEvent(payload=TaskMetrics(records=records), **self._envelope())
        message = amqp.event_message(event, proof=task_proof(self.task.key, event))
        await publish_until_confirmed(self._events, message, event.type)

    async def _finish(
        self,
        state: JobState,
        code: int | None,
        tail: str,
        reason: str,
        *,
        output: LogEnd | None = None,
        flushing: asyncio.Task[None] | None = None,
    ) -> None:
        """Persist, then deliver the final status; the agent is done once the broker has it
        (and `flushing`, the shipping of the rest of the output, is over)."""
        assert self._events is not None
        end = output or LogEnd()
        payload = TaskStatusChanged(
            state=state,
            exit_code=code,
            log_tail=tail,
            reason=reason,
            log_size=end.size,
            log_tail_at=end.tail_at,
        )
        event = TaskStatusChangedEvent(payload=payload, **self._envelope())
        self.report.keep(event)
        await self.report.send(self._events, event)
        log.info("task finished", state=state.value, exit_code=code)
        if flushing is not None:
            await flushing  # bounded by its own timeout
        self.done.set()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a prefetch error as seen: it is raised again when the task is assigned (if ever)."""
    if not task.cancelled():
        task.exception()


async def _connect(
    settings: FlameSettings, patience: float = 60.0
) -> aio_pika.abc.AbstractRobustConnection:
    """Connect to RabbitMQ, retrying for `patience` seconds (the broker may be starting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.2
    while True:
        try:
            return await amqp.connect(settings, name="flamelet")
        except (OSError, aio_pika.exceptions.AMQPError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
