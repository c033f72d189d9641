"""Builders of task configs for data-plane tests, and a runner beside a silent trainer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

PARAM_CHANNEL = {
    "name": "param-channel",
    "pair": ["trainer", "aggregator"],
    "groupBy": {"type": "tag", "value": ["default"]},
    "funcTags": {"trainer": ["fetch", "upload"], "aggregator": ["distribute", "aggregate"]},
}


def task_config(role: str, task_id: str, job_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A two-tier task config over the local backend."""
    config: dict[str, Any] = {
        "taskid": task_id,
        "backend": "local",
        "role": role,
        "realm": "",
        "job": {"id": job_id or uuid.uuid4().hex, "name": "test"},
        "groupAssociation": {"param-channel": "default"},
        "channels": [PARAM_CHANNEL],
        "hyperparameters": {"rounds": 2},
    }
    config.update(extra)
    return config


async def run_beside_silent(roles: Sequence[Any], silent: Any, bound: float) -> None:
    """Run `roles` to their end within `bound` seconds while `silent` (a `CountingTrainer`
    blocked in some round) runs beside them; then release and stop it."""
    runs = [asyncio.create_task(r.arun()) for r in roles]
    silent_run = asyncio.create_task(silent.arun())
    try:
        await asyncio.wait_for(asyncio.gather(*runs), bound)
    finally:
        silent.release.set()
        silent_run.cancel()
        await asyncio.gather(silent_run, return_exceptions=True)
