"""Per-app runtime context (settings and the ports the routes call) and its FastAPI dependency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from aio_pika.exceptions import AMQPError
from fastapi import Depends, Request

from flame_apiserver.codezip import ZipLimits
from flame_apiserver.ports import Controller, Publisher, Resources
from flame_apiserver.tokencache import TokenCache
from flame_common.jobs_read import JobReads
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_common.taskkeys import TaskKeys
from schemas.events import ResourceChanged, ResourceEventType, resource_event

log = get_logger(__name__)


@dataclass(frozen=True)
class ApiPorts:
    """What the routes run on: chosen once, by `create_app` (Mongo + RabbitMQ, or memory)."""

    resources: Resources
    jobs: JobReads
    controller: Controller
    publisher: Publisher
    # readiness checks by dependency (GET /readyz): each raises when its dependency is unreachable
    probes: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)


@dataclass
class ApiContext:
    settings: FlameSettings
    ports: ApiPorts
    tokens: TokenCache = field(default_factory=TokenCache)
    # every task's key, one read per job: agents' frequent calls (log chunks) skip a task read
    task_keys: TaskKeys = field(init=False)

    def __post_init__(self) -> None:
        self.task_keys = TaskKeys(self._job_keys)

    async def _job_keys(self, job_id: str) -> dict[str, str]:
        return {t.task_id: t.key for t in await self.jobs.tasks_of_job(job_id)}

    @property
    def resources(self) -> Resources:
        return self.ports.resources

    @property
    def jobs(self) -> JobReads:
        return self.ports.jobs

    @property
    def controller(self) -> Controller:
        return self.ports.controller

    @property
    def zip_limits(self) -> ZipLimits:
        return ZipLimits(
            max_files=self.settings.max_code_files,
            max_unpacked_bytes=self.settings.max_code_unpacked_bytes,
        )

    async def announce(
        self,
        event_type: ResourceEventType,
        user_id: str,
        resource_id: str,
        revision: int = 0,
        **detail: Any,
    ) -> None:
        """Publish a `design.*`/`schema.*`/`code.*`/`dataset.*`/`compute.*` event.

        Best effort: the resource is already stored, so a broker failure is logged, not raised.
        """
        payload = ResourceChanged(
            user_id=user_id, resource_id=resource_id, revision=revision, detail=detail
        )
        event = resource_event(event_type, payload, source="apiserver")
        try:
            await self.ports.publisher.publish(event)
        except (AMQPError, ConnectionError, RuntimeError) as exc:
            log.warning("event not published", event_type=event_type, error=str(exc))


def _context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(_context)]
