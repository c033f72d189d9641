"""Durable timers: jobs whose `deadline_at` (maxRunTime or stop grace) passed get a tick."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from flame_common.documents import JobDoc
from flame_common.logs import get_logger
from flame_controller.service import Controller

log = get_logger(__name__)


async def due_jobs(now: datetime) -> list[str]:
    cursor = JobDoc.get_pymongo_collection().find({"deadline_at": {"$lte": now}}, {"job_id": 1})
    return [raw["job_id"] async for raw in cursor]


async def run_timers(controller: Controller, interval: float) -> None:
    """Every `interval` s, tick the jobs past their deadline (deadlines live in MongoDB)."""
    while True:
        try:
            now = datetime.now(UTC)
            for job_id in await due_jobs(now):
                await controller.tick(job_id, now)
        except Exception:
            log.exception("timer pass failed")
        await asyncio.sleep(interval)
