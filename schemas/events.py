"""The event envelope and every typed event payload; decoding uses a discriminated union."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.job import JobSpec
from schemas.states import JobState

SCHEMA_VERSION = 1


def _now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- payloads -------------------------------------------------------------------------------


class JobCreated(Payload):
    user_id: str
    spec: JobSpec
    task_count: int


class JobUpdated(JobCreated):
    pass


class JobDeleted(Payload):
    user_id: str


class TaskCreated(Payload):
    role: str
    group_association: dict[str, str] | None = None
    compute_id: str
    dataset: str = ""


class TaskRemoved(Payload):
    reason: str = ""


class JobStateChanged(Payload):
    from_state: JobState
    to_state: JobState
    reason: str = ""


class WorkerRequested(Payload):
    compute_id: str
    task_ids: list[str]


class WorkerReleased(Payload):
    compute_id: str
    task_ids: list[str]


class WorkerCreated(Payload):
    compute_id: str
    worker_id: str = ""


class WorkerFailed(Payload):
    compute_id: str
    reason: str


class AgentRegistered(Payload):
    agent_id: str
    hostname: str = ""
    pid: int = 0


class AgentHeartbeat(Payload):
    agent_id: str


class AgentLost(Payload):
    agent_id: str
    reason: str


class TaskAssigned(Payload):
    agent_id: str = ""


class TaskStopRequested(Payload):
    reason: str = ""


class TaskStatusChanged(Payload):
    state: JobState
    exit_code: int | None = None
    log_tail: str = ""
    reason: str = ""


class ResourceChanged(Payload):
    """design.*, dataset.*, schema.*, code.uploaded: what changed, for monitors."""

    user_id: str
    resource_id: str
    revision: int = 0
    detail: dict[str, Any] = Field(default_factory=dict)


# --- envelope -------------------------------------------------------------------------------


class EventBase(BaseModel):
    """Frozen envelope; `type` is the discriminator and the routing key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: str
    occurred_at: datetime = Field(default_factory=_now)
    job_id: str | None = None
    task_id: str | None = None
    source: str = ""
    correlation_id: str | None = None
    causation_id: str | None = None
    schema_version: int = SCHEMA_VERSION
    seq: int | None = None  # per-job sequence number, assigned when the controller appends
    payload: Any


def _event(name: str, payload: type[Payload], cls_name: str) -> type[EventBase]:
    return type(
        cls_name,
        (EventBase,),
        {
            "__annotations__": {"type": Literal[name], "payload": payload},
            "type": name,
            "__module__": __name__,
        },
    )


EVENT_TYPES: dict[str, type[Payload]] = {
    "job.created": JobCreated,
    "job.updated": JobUpdated,
    "job.deleted": JobDeleted,
    "job.state_changed": JobStateChanged,
    "task.created": TaskCreated,
    "task.removed": TaskRemoved,
    "task.assigned": TaskAssigned,
    "task.stop_requested": TaskStopRequested,
    "task.status_changed": TaskStatusChanged,
    "worker.requested": WorkerRequested,
    "worker.released": WorkerReleased,
    "worker.created": WorkerCreated,
    "worker.failed": WorkerFailed,
    "agent.registered": AgentRegistered,
    "agent.heartbeat": AgentHeartbeat,
    "agent.lost": AgentLost,
    "design.created": ResourceChanged,
    "design.updated": ResourceChanged,
    "design.deleted": ResourceChanged,
    "schema.updated": ResourceChanged,
    "schema.deleted": ResourceChanged,
    "code.uploaded": ResourceChanged,
    "code.deleted": ResourceChanged,
    "dataset.created": ResourceChanged,
    "dataset.updated": ResourceChanged,
    "dataset.deleted": ResourceChanged,
    "compute.registered": ResourceChanged,
}

EVENT_CLASSES: dict[str, type[EventBase]] = {
    name: _event(
        name, payload, "".join(p.title() for p in name.replace("_", ".").split(".")) + "Event"
    )
    for name, payload in EVENT_TYPES.items()
}

_EVENT_UNION: Any = Union[tuple(EVENT_CLASSES.values())]  # noqa: UP007
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Annotated[_EVENT_UNION, Field(discriminator="type")])


def make_event(type_: str, payload: Payload | dict[str, Any], **envelope: Any) -> EventBase:
    """Build a typed event of `type_`; raises KeyError for an unknown type."""
    cls = EVENT_CLASSES[type_]
    if isinstance(payload, dict):
        payload = EVENT_TYPES[type_].model_validate(payload)
    return cls(payload=payload, **envelope)


def parse_event(data: bytes | str | dict[str, Any]) -> EventBase:
    """Decode any event (JSON bytes/str or dict); raises pydantic.ValidationError if invalid."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)


def event_json(event: EventBase) -> bytes:
    return event.model_dump_json().encode()
