"""Durable timers: jobs whose `deadline_at` (maxRunTime or stop grace) passed get a tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from flame_common.logs import get_logger
from flame_controller.ports import JobStore
from flame_controller.service import Controller

log = get_logger(__name__)


async def run_timers(
    controller: Controller,
    store: JobStore,
    interval: float,
    owns: Callable[[str], bool] | None = None,
) -> None:
    """Every `interval` s, tick the jobs past their deadline (deadlines live in the store) that
    this controller writes (`owns`: those of its partitions; None: every job), and settle the
    jobs whose last write failed."""
    while True:
        try:
            await controller.settle()
            now = datetime.now(UTC)
            for job_id in await store.due(now):
                if owns is None or owns(job_id):
                    await controller.tick(job_id, now)
        except Exception:
            log.exception("timer pass failed")
        await asyncio.sleep(interval)
