"""`flame.registries.registry_provider`: the model registry of a sort, opened for a task."""

from __future__ import annotations

from typing import Any

from flame_sdk.config import Config
from flame_sdk.registries import Registry, create_registry


class RegistryProvider:
    """`registry_provider.get(sort, config)`: our SDK's registry of `sort` for the task of
    `config` (Flame's `get(sort)` returned a client to call with the uri and job id; ours
    needs the task's identity up front)."""

    def get(self, sort: Any, config: Config) -> Registry:
        return create_registry(
            str(getattr(sort, "value", sort)),
            config.registry.uri,
            config.job.id,
            config.job.name,
            config.taskid,
            config.role,
        )


registry_provider = RegistryProvider()
