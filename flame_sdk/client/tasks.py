"""Tasks of a job: one worker per role instance (keys stay hidden), and their worker config."""

from __future__ import annotations

import builtins

from flame_sdk.client.base import Resource
from schemas.task import TaskInfo
from schemas.task_config import TaskConfig


class TasksClient(Resource):
    async def list(self, job_id: str, *, limit: int = 100) -> builtins.list[TaskInfo]:
        body = await self._t.json(
            "GET", self._path("jobs", job_id, "tasks"), params={"limit": limit}
        )
        return [TaskInfo.model_validate(t) for t in body or []]

    async def get(self, job_id: str, task_id: str) -> TaskInfo:
        body = await self._t.json("GET", self._path("jobs", job_id, "tasks", task_id))
        return TaskInfo.model_validate(body)

    async def config(self, job_id: str, task_id: str) -> TaskConfig:
        """The config a worker of this task receives (no key); `to_wire()` gives its JSON."""
        body = await self._t.json("GET", self._path("jobs", job_id, "tasks", task_id, "config"))
        return TaskConfig.model_validate(body)
