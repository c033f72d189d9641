"""The apiserver factory: a FastAPI app whose lifespan opens MongoDB (Beanie) and RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from flame_apiserver.context import ApiContext
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
    jobs,
)
from flame_apiserver.rpc import ControllerClient
from flame_apiserver.sse import StreamTiming
from flame_common.bus import events_exchange, make_broker
from flame_common.db import init_db
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings

log = get_logger(__name__)

_MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: FlameSettings, *, stream_timing: StreamTiming | None = None) -> FastAPI:
    """Build the REST API of one Flame stack (nothing connects until the lifespan starts)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await init_db(settings)
        broker = make_broker(settings)
        try:
            controller = ControllerClient(broker, settings)
            await broker.start()
            await broker.declare_exchange(events_exchange(settings))
            app.state.ctx = ApiContext(settings=settings, broker=broker, controller=controller)
            log.info("apiserver ready", namespace=settings.namespace, db=settings.mongo_db)
            yield
        finally:
            await broker.stop()
            await client.close()
            log.info("apiserver stopped")

    app = FastAPI(
        title="Flame API",
        version="1.0",
        description="Management API of Flame: designs, schemas, code, datasets, jobs, computes.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.stream_timing = stream_timing or StreamTiming()
    install_error_handlers(app)
    for router in (
        designs.router,
        code.router,
        datasets.router,
        jobs.router,
        events.router,
        computes.router,
        agents.router,
        deadletters.router,
    ):
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_code_bytes + _MULTIPART_OVERHEAD)
    app.add_middleware(SlashTolerance)
    return app
