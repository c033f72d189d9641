"""Durable timers: jobs whose `deadline_at` (maxRunTime or stop grace) passed get a tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from flame_common.logs import get_logger
from flame_controller.ports import JobStore
from flame_controller.service import Controller

log = get_logger(__name__)

REPEAT_LOG = 60.0  # seconds between log lines while timer passes keep failing


async def run_timers(
    controller: Controller,
    store: JobStore,
    interval: float,
    owns: Callable[[str], bool] | None = None,
) -> None:
    """Every `interval` s, tick the jobs past their deadline (deadlines live in the store) that
    this controller writes (`owns`: those of its partitions; None: every job), and settle the
    jobs whose last write failed. A failing pass (e.g. the database away) is logged with its
    traceback once, then once every REPEAT_LOG seconds until a pass succeeds again."""
    loop = asyncio.get_running_loop()
    failures, logged = 0, 0.0
    while True:
        try:
            await controller.settle()
            now = datetime.now(UTC)
            for job_id in await store.due(now):
                if owns is None or owns(job_id):
                    await controller.tick(job_id, now)
        except Exception as exc:
            failures += 1
            if failures == 1:
                log.exception("timer pass failed")
                logged = loop.time()
            elif loop.time() - logged >= REPEAT_LOG:
                log.error("timer passes still failing", failures=failures, error=repr(exc))
                logged = loop.time()
        else:
            if failures:
                log.info("timer passes work again", failed=failures)
            failures = 0
        await asyncio.sleep(interval)
