"""Public probes: `GET /healthz` (the process answers) and `GET /readyz` (its dependencies do)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from flame_apiserver.context import Ctx

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
