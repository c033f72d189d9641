"""The apiserver factory and composition root: given ports (e.g. memory) or MongoDB + RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from fastapi import FastAPI

from flame_apiserver.context import ApiContext, ApiPorts
from flame_apiserver.errors import install_error_handlers
from flame_apiserver.middleware import BodyLimit, SlashTolerance
from flame_apiserver.routes import (
    agents,
    code,
    computes,
    datasets,
    deadletters,
    designs,
    events,
    health,
    jobs,
    logs,
    metrics,
    tokens,
    ui,
)
from flame_apiserver.services import open_services
from flame_apiserver.sse import StreamSlots, StreamTiming
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings

log = get_logger(__name__)

_MULTIPART_OVERHEAD = 64 * 1024


def create_app(
    settings: FlameSettings,
    *,
    stream_timing: StreamTiming | None = None,
    ports: ApiPorts | None = None,
) -> FastAPI:
    """Build the REST API of one Flame stack (nothing connects until the lifespan starts).

    Without `ports` the lifespan opens MongoDB and RabbitMQ (`services.open_services`); with
    them (e.g. `memory.MemoryResources`, `MemoryJobReads`, a fake controller) it opens nothing.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened: AbstractAsyncContextManager[ApiPorts] = (
            nullcontext(ports) if ports is not None else open_services(settings)
        )
        try:
            async with opened as running:
                app.state.ctx = ApiContext(settings=settings, ports=running)
                log.info("apiserver ready", namespace=settings.namespace, db=settings.mongo_db)
                yield
        finally:
            log.info("apiserver stopped")

    app = FastAPI(
        title="Flame API",
        version="1.0",
        description="Management API of Flame: designs, schemas, code, datasets, jobs, computes.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.stream_timing = stream_timing or StreamTiming()
    app.state.stream_slots = StreamSlots(
        settings.max_event_streams, settings.max_event_streams_per_user
    )
    install_error_handlers(app)
    for router in (
        health.router,
        designs.router,
        code.router,
        datasets.router,
        datasets.user_router,
        jobs.router,
        events.router,
        metrics.router,
        logs.router,
        computes.router,
        logs.agent_router,
        agents.router,
        deadletters.router,
        tokens.router,
        ui.router,
    ):
        app.include_router(router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_code_bytes + _MULTIPART_OVERHEAD,
        max_json_bytes=settings.max_json_bytes,
    )
    app.add_middleware(SlashTolerance)
    return app
