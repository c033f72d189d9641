"""Builders of task configs for data-plane tests."""

from __future__ import annotations

import uuid
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
