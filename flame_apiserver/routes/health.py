"""Public probes: `GET /healthz`, `GET /readyz`; `GET /metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from flame_apiserver.context import Ctx
from flame_common import metrics

PROBE_TIMEOUT = 3.0  # seconds per dependency

router = APIRouter(tags=["health"])  # no authentication: orchestrators call these


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the apiserver serves requests."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: MongoDB and RabbitMQ answer (200), else 503 naming what does not."""
    checks: dict[str, str] = {}
    for name, probe in ctx.ports.probes.items():
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure of a probe means not ready
            checks[name] = f"unreachable: {exc or type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    """The process's Prometheus metrics (docs/observability.md). No token, like the probes:
    scrapers hold none, and every series is an aggregate whose labels come from closed sets
    (command kinds, outcomes, event types), never an id, a user or a secret."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)
