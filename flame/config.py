"""`flame.config.Config(path)`: Flame's task config class, read by our SDK's config parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import model_validator

from flame_sdk.config import Config as SdkConfig
from flame_sdk.config import ConfigError

FLAME_NAMES = {
    "batch_size": "batchSize",
    "learning_rate": "learningRate",
    "weight_decay": "weightDecay",
    "aggregation_goal": "aggGoal",
}
"""Flame's snake_case hyperparameter attributes and the config keys they read."""

OPTIONAL = ("batch_size", "learning_rate", "weight_decay", "aggregation_goal", "concurrency")
"""Attributes that read None when the key is absent (optional fields of Flame's schema)."""


class Hyperparameters(dict[str, Any]):
    """The hyperparameters mapping (as our SDK reads it) that also answers Flame's attributes:
    `hp.batch_size` reads `batchSize`, `hp.rounds` reads `rounds`, any other key reads itself.
    A per-role mapping value (`{"trainer": 2}`) is read for `role`."""

    def __init__(self, data: Any = (), role: str = "") -> None:
        super().__init__(data)
        self.role = role

    def __getattr__(self, name: str) -> Any:
        key = FLAME_NAMES.get(name, name)
        if key not in self:
            if name in OPTIONAL:
                return None
            raise AttributeError(f"no hyperparameter {key!r}")
        value = self[key]
        return value.get(self.role) if isinstance(value, dict) else value


class Config(SdkConfig):
    """A task config, built as Flame builds it: `Config("config.json")`.

    It is our SDK's `Config` (the roles read it as such), and it reads the file our agent
    writes (the job's task config plus `taskid`). Flame's spellings: `task_id` and
    `hyperparameters.<snake_case>` (see `Hyperparameters`).
    """

    def __init__(self, source: str | Path | dict[str, Any] | None = None, /, **data: Any) -> None:
        if source is not None:
            data = {**_read(source), **data}
        super().__init__(**data)

    @model_validator(mode="after")
    def _flame_hyperparameters(self) -> Config:
        self.hyperparameters = Hyperparameters(self.hyperparameters, self.role)
        return self

    @property
    def task_id(self) -> str:
        return self.taskid


def _read(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    try:
        data = json.loads(Path(source).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read task config {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"task config {source}: a JSON object is needed")
    return data


def as_flame_config(config: SdkConfig | str | Path | dict[str, Any]) -> Config:
    """`config` as a `flame.config.Config` (roles built by flame-sim get our SDK's Config)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, SdkConfig):
        return Config(config.model_dump(by_alias=True))
    return Config(config)


def load_config(path: str | Path) -> Config:
    """Older Flame examples' spelling of `Config(path)`."""
    return Config(path)
