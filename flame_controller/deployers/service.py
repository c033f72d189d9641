"""The deployer service: turns `worker.requested`/`worker.released` for its compute into workers."""

from __future__ import annotations

import asyncio
import uuid

import pydantic
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from flame_common import amqp, metrics
from flame_common.jobs_read import JobReads
from flame_common.logs import get_logger
from flame_common.proofs import event_refusal, proof_of, service_proof
from flame_common.recent import RecentIds
from flame_common.redelivery import processing
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import Deployer, WorkerSpec
from schemas.events import (
    EventBase,
    WorkerCreated,
    WorkerCreatedEvent,
    WorkerFailed,
    WorkerFailedEvent,
    WorkerReleasedEvent,
    WorkerRequestedEvent,
    parse_event,
)
from schemas.states import JobState

# A worker is started only for a job in one of these states (or one without a projection yet,
# whose tasks then decide): a late or repeated request of a job that ended or stops starts none.
DEPLOYABLE = frozenset({JobState.STARTING, JobState.DEPLOYING, JobState.RUNNING})

log = get_logger(__name__)

WATCHED = ["worker.requested", "worker.released"]


class DeployerService:
    """Consumes worker events of one compute id and drives a `Deployer`."""

    def __init__(
        self,
        settings: FlameSettings,
        compute_id: str,
        deployer: Deployer,
        events: AbstractExchange,
        jobs: JobReads,
    ) -> None:
        self.settings = settings
        self.compute_id = compute_id
        self.deployer = deployer
        self.events = events
        self.jobs = jobs
        self.source = f"deployer.{compute_id}"
        self.recent = RecentIds()

    async def _publish(self, event: EventBase, key: str) -> None:
        """Publish `event` under an id derived from its type, job, task and `key`."""
        name = f"{event.type}/{event.job_id}/{event.task_id}/{key}"
        event = event.model_copy(update={"id": uuid.uuid5(uuid.NAMESPACE_URL, name).hex})
        proof = service_proof(self.settings.service_secret, event)
        await self.events.publish(amqp.event_message(event, proof=proof), routing_key=event.type)
        metrics.published("deployer", event.type)

    async def worker_failed(self, job_id: str, task_id: str, reason: str) -> None:
        """Report a worker that could not start or died on its own."""
        log.warning("worker failed", job_id=job_id, task_id=task_id, reason=reason)
        metrics.WORKERS_FAILED.inc()
        payload = WorkerFailed(compute_id=self.compute_id, reason=reason)
        event = WorkerFailedEvent(
            payload=payload, job_id=job_id, task_id=task_id, source=self.source
        )
        await self._publish(event, uuid.uuid4().hex)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with processing(message, self.settings, f"deployer.{self.compute_id}"):
            try:
                event = parse_event(message.body)
            except (pydantic.ValidationError, ValueError):
                log.warning("dropping malformed message", message_id=message.message_id)
                return
            metrics.consumed("deployer", event.type)
            if not isinstance(event, WorkerRequestedEvent | WorkerReleasedEvent):
                return
            if event.payload.compute_id != self.compute_id or not event.job_id:
                return
            secret = self.settings.service_secret
            refusal = event_refusal(event, proof_of(message.headers), secret=secret, task_keys={})
            if refusal is not None:  # not from the controller: start or stop nothing
                log.warning(
                    "unproven event dropped", type=event.type, job_id=event.job_id, reason=refusal
                )
                return
            if not self.recent.claim(event.id):
                log.info("duplicate event skipped", event_id=event.id, type=event.type)
                return
            try:
                await self._handle(event)
            except BaseException:
                self.recent.release(event.id)  # its redelivery is handled again
                raise

    async def _handle(self, event: WorkerRequestedEvent | WorkerReleasedEvent) -> None:
        assert event.job_id
        if isinstance(event, WorkerRequestedEvent):
            await self.deploy(event)
        else:
            await self.deployer.stop(event.job_id, list(event.payload.task_ids))
            log.info("workers released", job_id=event.job_id, count=len(event.payload.task_ids))

    async def deploy(self, event: WorkerRequestedEvent) -> None:
        """Start the requested workers, all at once; none for a job that is no longer
        deploying or running, nor for tasks that already ended (a late or repeated request)."""
        job_id = str(event.job_id)
        job = await self.jobs.job(job_id)
        if job is not None and job.state not in DEPLOYABLE:
            log.info("worker request of an inactive job ignored", job_id=job_id, state=job.state)
            return
        task_ids = list(dict.fromkeys(event.payload.task_ids))
        ended = await self.jobs.terminal_tasks(task_ids)
        if ended:
            log.info("worker request of ended tasks ignored", job_id=job_id, tasks=sorted(ended))
            task_ids = [t for t in task_ids if t not in ended]
        keys = await self.jobs.task_keys(job_id, task_ids)
        await asyncio.gather(*(self._deploy_one(job_id, t, keys.get(t)) for t in task_ids))

    async def _deploy_one(self, job_id: str, task_id: str, key: str | None) -> None:
        if key is None:
            await self.worker_failed(job_id, task_id, "no such task")
            return
        spec = WorkerSpec(job_id, task_id, key, self.settings.apiserver_url)
        try:
            worker_id = await self.deployer.start(spec)
        except Exception as exc:  # any adapter error becomes a worker.failed fact
            await self.worker_failed(job_id, task_id, f"cannot start worker: {exc}")
            return
        metrics.WORKERS_STARTED.inc()
        payload = WorkerCreated(compute_id=self.compute_id, worker_id=worker_id)
        event = WorkerCreatedEvent(
            payload=payload, job_id=job_id, task_id=task_id, source=self.source
        )
        await self._publish(event, worker_id)
