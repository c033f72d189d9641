"""The worker task config as the data plane reads it: validation, group resolution, func tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError, model_validator

from schemas.design import Channel
from schemas.errors import Invalid
from schemas.task_config import TaskConfig

DEFAULT_GROUP = "default"
BACKEND_SORTS = ("local", "rabbitmq", "mqtt", "p2p")
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"rounds": 1, "epochs": 1, "batchSize": 16}


class ConfigError(Invalid):
    """A task config that cannot run; the message names the offending field."""


class Config(TaskConfig):
    """A validated task config for one process (one end of the job)."""

    @model_validator(mode="after")
    def _check(self) -> Config:
        if not self.taskid:
            raise ValueError("taskid: required (the end id of this process)")
        if not self.role:
            raise ValueError("role: required")
        if self.backend not in BACKEND_SORTS:
            raise ValueError(f"backend: unknown sort {self.backend!r} (one of {BACKEND_SORTS})")
        for channel in self.channels:
            self._check_channel(channel)
        self.hyperparameters = {**DEFAULT_HYPERPARAMETERS, **self.hyperparameters}
        return self

    def _check_channel(self, channel: Channel) -> None:
        where = f"channels[{channel.name}]"
        if self.role not in channel.pair:
            raise ValueError(f"{where}.pair {channel.pair} does not contain role '{self.role}'")
        if self.role not in channel.func_tags:
            raise ValueError(f"{where}.funcTags has no entry for role '{self.role}'")
        sort = channel.backend or self.backend
        if sort not in BACKEND_SORTS:
            raise ValueError(f"{where}.backend: unknown sort {sort!r} (one of {BACKEND_SORTS})")
        if sort != "local" and not channel.broker_host and not self.broker_of(sort):
            raise ValueError(f"brokers: no broker of sort '{sort}' (needed by {where})")
        assoc = (self.group_association or {}).get(channel.name)
        groups = channel.group_by.value
        if assoc is not None and groups and assoc not in groups:
            raise ValueError(
                f"groupAssociation[{channel.name}] = '{assoc}' is not one of the channel's "
                f"groupBy values {groups}"
            )

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> Config:
        """Parse a config file path or dict; raise ConfigError naming the bad field."""
        if isinstance(source, dict):
            data = source
        else:
            try:
                data = json.loads(Path(source).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"cannot read task config {source}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    def broker_of(self, sort: str) -> str:
        """The broker address of a backend sort ('' if none is configured)."""
        return next((b.host for b in self.brokers if b.sort == sort), "")

    def channel(self, name: str) -> Channel:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise ConfigError(f"channels: no channel named '{name}'")

    def group_of(self, channel: Channel) -> str:
        """This end's group on a channel: its association, else 'default'."""
        return (self.group_association or {}).get(channel.name) or DEFAULT_GROUP

    def peer_role(self, channel: Channel) -> str:
        a, b = channel.pair
        return b if a == self.role else a

    def backend_of(self, channel: Channel) -> tuple[str, str]:
        """(sort, broker) serving a channel: its own override, else the task's default."""
        sort = channel.backend or self.backend
        return sort, channel.broker_host or self.broker_of(sort)

    def func_tag_map(self) -> dict[str, str]:
        """func tag -> channel name for this role; a tag on two channels is an error."""
        mapping: dict[str, str] = {}
        for channel in self.channels:
            for tag in channel.func_tags[self.role]:
                if tag in mapping:
                    raise ConfigError(
                        f"channels: func tag '{tag}' of role '{self.role}' is on both "
                        f"'{mapping[tag]}' and '{channel.name}'"
                    )
                mapping[tag] = channel.name
        return mapping

    def hyperparameter(self, name: str, default: Any = None) -> Any:
        """A hyperparameter; a mapping value is read per role (`{"trainer": 2, ...}`)."""
        value = self.hyperparameters.get(name, default)
        if isinstance(value, dict):
            return value.get(self.role, default)
        return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid task config: " + "; ".join(parts)
