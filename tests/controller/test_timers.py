"""The timer loop: a store that keeps failing is logged once (not every pass), its recovery too."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from structlog.testing import capture_logs

from flame_controller.timers import run_timers
from tests.support.wait import eventually


class Flaky:
    """A controller and store whose passes fail while `failing`; counts the passes."""

    def __init__(self) -> None:
        self.failing = True
        self.passes = 0
        self.ticked: list[str] = []

    async def settle(self) -> None:
        self.passes += 1
        if self.failing:
            raise ConnectionError("database away")

    async def due(self, now: datetime) -> list[str]:
        return ["j1"]

    async def tick(self, job_id: str, now: datetime) -> None:
        self.ticked.append(job_id)


async def test_a_failing_pass_is_logged_once_and_its_recovery_too() -> None:
    flaky = Flaky()
    fake: Any = flaky
    with capture_logs() as logs:
        timers = asyncio.create_task(run_timers(fake, fake, 0.001))
        try:
            await eventually(lambda: flaky.passes >= 50, what="50 failing passes")
            flaky.failing = False
            await eventually(lambda: bool(flaky.ticked), what="a pass that works")
        finally:
            timers.cancel()
            await asyncio.gather(timers, return_exceptions=True)
    events = [entry["event"] for entry in logs]
    assert events.count("timer pass failed") == 1, events
    assert "timer passes still failing" not in events  # within REPEAT_LOG seconds
    assert events.count("timer passes work again") == 1
    assert next(e for e in logs if e["event"] == "timer passes work again")["failed"] >= 50
