"""The worker task config (the `config` part of a task manifest), as Flame's SDK reads it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from schemas.base import LenientModel
from schemas.design import Channel
from schemas.job import BaseModelRef, Plugin

# Backends whose role code talks through a job broker of the same sort (FLAME_JOB_BROKERS).
BROKER_BACKENDS = ("mqtt", "rabbitmq")


class Broker(LenientModel):
    sort: str
    host: str


class Registry(LenientModel):
    sort: str = ""
    uri: str = ""


class JobRef(LenientModel):
    id: str
    name: str


class TaskConfig(LenientModel):
    """Everything one worker needs to run its role; `taskid` is added by the agent."""

    backend: str
    brokers: list[Broker] = Field(default_factory=list)
    registry: Registry = Field(default_factory=Registry)
    job: JobRef
    role: str
    realm: str = ""
    channels: list[Channel]
    group_association: dict[str, str] | None = None
    max_run_time: int = 0
    base_model: BaseModelRef = Field(default_factory=BaseModelRef)
    optimizer: Plugin = Field(default_factory=Plugin)
    selector: Plugin = Field(default_factory=Plugin)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)
    dataset: str = ""
    taskid: str = Field(default="", alias="taskid")
    privacy: Plugin = Field(default_factory=Plugin)
    datasampler: Plugin = Field(default_factory=Plugin)

    @field_validator("brokers", "channels", "dependencies", mode="before")
    @classmethod
    def _null_is_empty_list(cls, v: Any) -> Any:
        return [] if v is None else v

    def to_wire(self) -> dict[str, Any]:
        """Flame's key set and emptiness rules (control-plane reference §4.2)."""
        out: dict[str, Any] = {"backend": self.backend}
        if self.brokers:
            out["brokers"] = [b.wire() for b in self.brokers]
        out["registry"] = self.registry.wire()
        out["job"] = self.job.wire()
        out["role"] = self.role
        out["realm"] = self.realm
        out["channels"] = [_channel_wire(c) for c in self.channels]
        out["groupAssociation"] = self.group_association
        if self.max_run_time:
            out["maxRunTime"] = self.max_run_time
        out["baseModel"] = self.base_model.wire(exclude_defaults=True)
        for key, plugin in (("optimizer", self.optimizer), ("selector", self.selector)):
            out[key] = plugin.wire(exclude_defaults=True)
        if self.hyperparameters:
            out["hyperparameters"] = self.hyperparameters
        if self.dependencies:
            out["dependencies"] = sorted(self.dependencies)
        if self.dataset:
            out["dataset"] = self.dataset
        for key, plugin in (("privacy", self.privacy), ("datasampler", self.datasampler)):
            if plugin.sort:
                out[key] = plugin.wire(exclude_defaults=True)
        if self.taskid:
            out["taskid"] = self.taskid
        return out


def _channel_wire(channel: Channel) -> dict[str, Any]:
    data = channel.wire(exclude_defaults=True)
    data["groupBy"] = channel.group_by.wire()
    data["funcTags"] = channel.func_tags
    data["pair"] = channel.pair
    return data
