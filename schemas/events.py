"""The event envelope, one class per event type, their discriminated union and its upcasters."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypedDict, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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
    # a final status: bytes of output the role code wrote; its agent ships what is left of them
    # alongside (within FINAL_LOG_FLUSH seconds), not before. `log_tail_at`: where `log_tail`
    # starts in the output when it is the output's last bytes exactly (UTF-8): those bytes need
    # no shipping, a log read completes the stored output from the tail.
    log_size: int | None = Field(default=None, ge=0, le=1 << 50)
    log_tail_at: int | None = Field(default=None, ge=0, le=1 << 50)


MAX_METRIC_RECORDS = 100  # rounds per task.metrics event
MAX_METRICS = 64  # metrics per round
MAX_METRIC_NAME = 128
MetricName = Annotated[str, Field(min_length=1, max_length=MAX_METRIC_NAME)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class MetricsRecord(BaseModel):
    """The metrics a role recorded for one round (`update_metrics`, tasklet runtimes, bytes)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    round: int = Field(ge=0, le=10**9)
    metrics: dict[MetricName, FiniteFloat] = Field(max_length=MAX_METRICS)


class TaskMetrics(Payload):
    records: list[MetricsRecord] = Field(min_length=1, max_length=MAX_METRIC_RECORDS)


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
    payload: Payload


class Envelope(TypedDict, total=False):
    """Envelope fields as keyword arguments, for emitters that build many events alike."""

    id: str
    occurred_at: datetime
    job_id: str | None
    task_id: str | None
    source: str
    correlation_id: str | None
    causation_id: str | None
    seq: int | None


# --- one class per event type ---------------------------------------------------------------


class JobCreatedEvent(EventBase):
    type: Literal["job.created"] = "job.created"
    payload: JobCreated


class JobUpdatedEvent(EventBase):
    type: Literal["job.updated"] = "job.updated"
    payload: JobUpdated


class JobDeletedEvent(EventBase):
    type: Literal["job.deleted"] = "job.deleted"
    payload: JobDeleted


class JobStateChangedEvent(EventBase):
    type: Literal["job.state_changed"] = "job.state_changed"
    payload: JobStateChanged


class TaskCreatedEvent(EventBase):
    type: Literal["task.created"] = "task.created"
    payload: TaskCreated


class TaskRemovedEvent(EventBase):
    type: Literal["task.removed"] = "task.removed"
    payload: TaskRemoved


class TaskAssignedEvent(EventBase):
    type: Literal["task.assigned"] = "task.assigned"
    payload: TaskAssigned


class TaskStopRequestedEvent(EventBase):
    type: Literal["task.stop_requested"] = "task.stop_requested"
    payload: TaskStopRequested


class TaskStatusChangedEvent(EventBase):
    type: Literal["task.status_changed"] = "task.status_changed"
    payload: TaskStatusChanged


class TaskMetricsEvent(EventBase):
    type: Literal["task.metrics"] = "task.metrics"
    payload: TaskMetrics


class WorkerRequestedEvent(EventBase):
    type: Literal["worker.requested"] = "worker.requested"
    payload: WorkerRequested


class WorkerReleasedEvent(EventBase):
    type: Literal["worker.released"] = "worker.released"
    payload: WorkerReleased


class WorkerCreatedEvent(EventBase):
    type: Literal["worker.created"] = "worker.created"
    payload: WorkerCreated


class WorkerFailedEvent(EventBase):
    type: Literal["worker.failed"] = "worker.failed"
    payload: WorkerFailed


class AgentRegisteredEvent(EventBase):
    type: Literal["agent.registered"] = "agent.registered"
    payload: AgentRegistered


class AgentHeartbeatEvent(EventBase):
    type: Literal["agent.heartbeat"] = "agent.heartbeat"
    payload: AgentHeartbeat


class AgentLostEvent(EventBase):
    type: Literal["agent.lost"] = "agent.lost"
    payload: AgentLost


class ResourceEvent(EventBase):
    """The apiserver's `design.*`, `schema.*`, `code.*`, `dataset.*` and `compute.*` events."""

    payload: ResourceChanged


class DesignCreatedEvent(ResourceEvent):
    type: Literal["design.created"] = "design.created"


class DesignUpdatedEvent(ResourceEvent):
    type: Literal["design.updated"] = "design.updated"


class DesignDeletedEvent(ResourceEvent):
    type: Literal["design.deleted"] = "design.deleted"


class SchemaUpdatedEvent(ResourceEvent):
    type: Literal["schema.updated"] = "schema.updated"


class SchemaDeletedEvent(ResourceEvent):
    type: Literal["schema.deleted"] = "schema.deleted"


class CodeUploadedEvent(ResourceEvent):
    type: Literal["code.uploaded"] = "code.uploaded"


class CodeDeletedEvent(ResourceEvent):
    type: Literal["code.deleted"] = "code.deleted"


class DatasetCreatedEvent(ResourceEvent):
    type: Literal["dataset.created"] = "dataset.created"


class DatasetUpdatedEvent(ResourceEvent):
    type: Literal["dataset.updated"] = "dataset.updated"


class DatasetDeletedEvent(ResourceEvent):
    type: Literal["dataset.deleted"] = "dataset.deleted"


class ComputeRegisteredEvent(ResourceEvent):
    type: Literal["compute.registered"] = "compute.registered"


Event = Annotated[
    JobCreatedEvent
    | JobUpdatedEvent
    | JobDeletedEvent
    | JobStateChangedEvent
    | TaskCreatedEvent
    | TaskRemovedEvent
    | TaskAssignedEvent
    | TaskStopRequestedEvent
    | TaskStatusChangedEvent
    | TaskMetricsEvent
    | WorkerRequestedEvent
    | WorkerReleasedEvent
    | WorkerCreatedEvent
    | WorkerFailedEvent
    | AgentRegisteredEvent
    | AgentHeartbeatEvent
    | AgentLostEvent
    | DesignCreatedEvent
    | DesignUpdatedEvent
    | DesignDeletedEvent
    | SchemaUpdatedEvent
    | SchemaDeletedEvent
    | CodeUploadedEvent
    | CodeDeletedEvent
    | DatasetCreatedEvent
    | DatasetUpdatedEvent
    | DatasetDeletedEvent
    | ComputeRegisteredEvent,
    Field(discriminator="type"),
]
"""Any event: a discriminated union on `type`; narrow with isinstance/match to reach the payload."""

ResourceEventType = Literal[
    "design.created",
    "design.updated",
    "design.deleted",
    "schema.updated",
    "schema.deleted",
    "code.uploaded",
    "code.deleted",
    "dataset.created",
    "dataset.updated",
    "dataset.deleted",
    "compute.registered",
]


def _type_of(cls: type[EventBase]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


# Every event class by its `type` (the catalogue of types this version knows).
EVENT_CLASSES: Mapping[str, type[EventBase]] = MappingProxyType(
    {_type_of(cls): cls for cls in get_args(get_args(Event)[0])}
)
RESOURCE_EVENTS: Mapping[str, type[ResourceEvent]] = MappingProxyType(
    {name: cls for name, cls in EVENT_CLASSES.items() if issubclass(cls, ResourceEvent)}
)

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def resource_event(
    type_: ResourceEventType, payload: ResourceChanged, **envelope: Any
) -> ResourceEvent:
    """The `type_` resource event (the apiserver announces these by name)."""
    return RESOURCE_EVENTS[type_](payload=payload, **envelope)


# --- upcasting ------------------------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (type, version) -> the step that turns a raw event of that version into the next version.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_UNVERSIONED = 1  # every stored event carries schema_version; 1 is the first version


def upcaster(type_: str, version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated step: a raw `type_` event of `version` -> one of `version + 1`.

    A step gets a copy of the raw dict (envelope and payload) and returns the new one; it runs
    before validation, so it may rename, add or drop fields freely.
    """
    if type_ not in EVENT_CLASSES:
        raise ValueError(f"cannot register an upcaster for unknown event type {type_!r}")
    if version >= SCHEMA_VERSION:
        raise ValueError(
            f"an upcaster starts from an older version than the current {SCHEMA_VERSION}, "
            f"not {version}"
        )

    def register(step: Upcaster) -> Upcaster:
        if (type_, version) in UPCASTERS:
            raise ValueError(f"an upcaster for {type_} v{version} is already registered")
        UPCASTERS[(type_, version)] = step
        return step

    return register


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` brought to SCHEMA_VERSION by the registered steps (missing steps change nothing)."""
    version = raw.get("schema_version", _UNVERSIONED)
    if not isinstance(version, int) or version >= SCHEMA_VERSION:
        return raw
    raw = copy.deepcopy(raw)
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get((raw.get("type", ""), version))
        if step is not None:
            raw = step(raw)
        version += 1
    return {**raw, "schema_version": version}


def _older(raw: Any) -> bool:
    version = raw.get("schema_version", _UNVERSIONED) if isinstance(raw, dict) else None
    return isinstance(version, int) and version < SCHEMA_VERSION


def parse_event(data: bytes | str | dict[str, Any]) -> Event:
    """Decode any event (JSON bytes/str or dict), upcasting older versions first.

    Raises pydantic.ValidationError if invalid, naming the type when it is unknown.
    """
    if isinstance(data, dict):
        return _ADAPTER.validate_python(upcast(data))
    try:
        event = _ADAPTER.validate_json(data)
    except ValidationError:
        raw = _loads(data)
        if not _older(raw):
            raise
        return _ADAPTER.validate_python(upcast(raw))
    if event.schema_version < SCHEMA_VERSION:  # valid as is, but may mean something else now
        return _ADAPTER.validate_python(upcast(_loads(data)))
    return event


def _loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def event_json(event: EventBase) -> bytes:
    return event.model_dump_json().encode()
