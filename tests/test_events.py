"""Typed events: one class per type, the wire format, unknown types and upcasting old versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from flame_controller.state import evolve
from schemas import events
from schemas.events import (
    EVENT_CLASSES,
    RESOURCE_EVENTS,
    SCHEMA_VERSION,
    AgentLost,
    AgentRegisteredEvent,
    EventBase,
    JobCreatedEvent,
    JobUpdated,
    Payload,
    ResourceChanged,
    ResourceEventType,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    event_json,
    parse_event,
    resource_event,
    upcast,
    upcaster,
)
from schemas.states import JobState

SPEC = {"name": "j", "designId": "d", "backend": "p2p", "maxRunTime": 60}
PAYLOADS: dict[str, dict[str, Any]] = {
    "JobCreated": {"user_id": "u", "spec": SPEC, "task_count": 3},
    "JobUpdated": {"user_id": "u", "spec": SPEC, "task_count": 2},
    "JobDeleted": {"user_id": "u"},
    "JobStateChanged": {"from_state": "ready", "to_state": "starting", "reason": "r"},
    "TaskCreated": {"role": "trainer", "group_association": {"p": "us"}, "compute_id": "c"},
    "TaskRemoved": {"reason": "gone"},
    "TaskAssigned": {"agent_id": "a"},
    "TaskStopRequested": {"reason": "user"},
    "TaskStatusChanged": {"state": "failed", "exit_code": 3, "log_tail": "x\ny", "reason": "b"},
    "TaskMetrics": {"records": [{"round": 2, "metrics": {"test_accuracy": 0.75}}]},
    "WorkerRequested": {"compute_id": "c", "task_ids": ["t1", "t2"]},
    "WorkerReleased": {"compute_id": "c", "task_ids": ["t1"]},
    "WorkerCreated": {"compute_id": "c", "worker_id": "w"},
    "WorkerFailed": {"compute_id": "c", "reason": "r"},
    "AgentRegistered": {"agent_id": "a", "hostname": "h", "pid": 7},
    "AgentHeartbeat": {"agent_id": "a"},
    "AgentLost": {"agent_id": "a", "reason": "r"},
    "ResourceChanged": {"user_id": "u", "resource_id": "r", "revision": 2, "detail": {"k": 1}},
}
ENVELOPE: dict[str, Any] = {
    "id": "e1",
    "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "job_id": "j",
    "task_id": "t",
    "source": "s",
    "correlation_id": "c",
    "causation_id": "k",
    "seq": 4,
}
# The wire form of a status report as the dict-built events of schema version 1 wrote it.
STATUS_WIRE = (
    '{"id":"e1","type":"task.status_changed","occurred_at":"2026-01-02T03:04:05.678901Z",'
    '"job_id":"j","task_id":"t","source":"s","correlation_id":"c","causation_id":"k",'
    '"schema_version":1,"seq":4,"payload":{"state":"failed","exit_code":3,"log_tail":"x\\ny",'
    '"reason":"b"}}'
)
# what the final status adds since (optional: the wire above still parses)
STATUS_WIRE_NOW = STATUS_WIRE.removesuffix("}}") + ',"log_size":null,"log_tail_at":null}}'


def payload_class(cls: type[EventBase]) -> type[Payload]:
    annotation = cls.model_fields["payload"].annotation
    assert isinstance(annotation, type) and issubclass(annotation, Payload)
    return annotation


def sample(cls: type[EventBase]) -> EventBase:
    payload = payload_class(cls)
    return cls(payload=payload.model_validate(PAYLOADS[payload.__name__]), **ENVELOPE)


@pytest.mark.parametrize("type_", sorted(EVENT_CLASSES))
def test_every_event_type_round_trips(type_: str) -> None:
    cls = EVENT_CLASSES[type_]
    event = sample(cls)
    assert event.type == type_ and cls.__name__.endswith("Event")
    for wire in (event_json(event), event_json(event).decode(), event.model_dump(mode="json")):
        back = parse_event(wire)
        assert type(back) is cls and back == event
        assert event_json(back) == event_json(event)


def test_the_catalogue_names_each_class_by_its_type() -> None:
    assert len(EVENT_CLASSES) == 28
    assert EVENT_CLASSES["task.status_changed"] is TaskStatusChangedEvent
    assert set(RESOURCE_EVENTS) == set(get_args(ResourceEventType))
    assert all(payload_class(cls) is ResourceChanged for cls in RESOURCE_EVENTS.values())


def test_wire_format_is_unchanged() -> None:
    payload = TaskStatusChanged(state=JobState.FAILED, exit_code=3, log_tail="x\ny", reason="b")
    wire = event_json(TaskStatusChangedEvent(payload=payload, **ENVELOPE)).decode()
    assert wire == STATUS_WIRE_NOW
    assert parse_event(STATUS_WIRE).payload == payload == parse_event(STATUS_WIRE_NOW).payload


def test_resource_events_are_picked_by_name() -> None:
    payload = ResourceChanged(user_id="u", resource_id="mnist")
    event = resource_event("design.created", payload, source="apiserver")
    assert type(event) is EVENT_CLASSES["design.created"] and event.payload is payload


def test_unknown_type_is_rejected_naming_it() -> None:
    body = json.dumps({"type": "job.exploded", "payload": {}})
    with pytest.raises(ValidationError, match=r"'job\.exploded'"):
        parse_event(body)
    with pytest.raises(ValidationError, match="'type'"):
        parse_event({"payload": {}})


def test_payload_must_match_the_type() -> None:
    with pytest.raises(ValidationError, match="TaskStatusChanged"):
        TaskStatusChangedEvent(payload=AgentLost(agent_id="a", reason="r"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"payload\.state"):
        parse_event({"type": "task.status_changed", "payload": {"agent_id": "a", "reason": "r"}})
    # a subclass payload is still its own type's payload, never the parent's event
    job_updated = JobUpdated.model_validate(PAYLOADS["JobUpdated"])
    assert JobCreatedEvent(payload=job_updated).type == "job.created"


def test_narrowing_reaches_the_payload() -> None:
    event = parse_event(STATUS_WIRE)
    assert isinstance(event, TaskStatusChangedEvent) and event.payload.exit_code == 3
    assert not isinstance(event, AgentRegisteredEvent)


# --- upcasting -------------------------------------------------------------------------------

V0_STATUS = {"type": "task.status_changed", "schema_version": 0, "payload": {"status": "running"}}
V0_AGENT = {
    "type": "agent.registered",
    "schema_version": 0,
    "payload": {"agent_id": "a", "host": "h"},
}


@pytest.fixture
def v0(monkeypatch: pytest.MonkeyPatch) -> None:
    """A made-up version 0 whose status reports said `status` and agents `host`."""
    monkeypatch.setattr(events, "UPCASTERS", {})

    @upcaster("task.status_changed", 0)
    def _status(raw: dict[str, Any]) -> dict[str, Any]:
        raw["payload"]["state"] = raw["payload"].pop("status")
        return raw

    @upcaster("agent.registered", 0)
    def _agent(raw: dict[str, Any]) -> dict[str, Any]:
        raw["payload"]["hostname"] = raw["payload"].pop("host")
        return raw


@pytest.mark.usefixtures("v0")
@pytest.mark.parametrize("form", ["dict", "bytes", "str"])
def test_older_versions_are_upcast_before_validation(form: str) -> None:
    def encode(raw: dict[str, Any]) -> Any:
        return {"dict": raw, "bytes": json.dumps(raw).encode(), "str": json.dumps(raw)}[form]

    status = parse_event(encode(V0_STATUS))
    assert isinstance(status, TaskStatusChangedEvent)
    assert status.payload.state is JobState.RUNNING and status.schema_version == SCHEMA_VERSION
    # valid as it is (unknown fields are ignored), yet still upcast: `host` is not lost
    agent = parse_event(encode(V0_AGENT))
    assert isinstance(agent, AgentRegisteredEvent) and agent.payload.hostname == "h"
    assert V0_STATUS["payload"] == {"status": "running"}  # the caller's dict is left alone


@pytest.mark.usefixtures("v0")
def test_types_without_a_step_pass_unchanged_and_current_events_are_not_touched() -> None:
    raw = {"type": "task.removed", "schema_version": 0, "payload": {"reason": "x"}}
    assert upcast(raw) == {**raw, "schema_version": SCHEMA_VERSION}
    current = {**V0_STATUS, "schema_version": SCHEMA_VERSION}
    assert upcast(current) is current
    with pytest.raises(ValidationError, match=r"payload\.state"):
        parse_event(current)  # a current event is validated as it is


@pytest.mark.usefixtures("v0")
def test_a_stored_log_of_an_older_version_replays() -> None:
    created = sample(JobCreatedEvent).model_copy(update={"seq": 1})
    task = {**ENVELOPE, "type": "task.created", "seq": 2, "payload": PAYLOADS["TaskCreated"]}
    log = [
        created.model_dump(mode="json"),
        json.loads(json.dumps(task, default=str)),
        {**V0_STATUS, "job_id": "j", "task_id": "t", "seq": 3},
    ]
    state = None
    for body in log:
        state = evolve(state, parse_event(body))
    assert state is not None and state.tasks["t"].state is JobState.RUNNING
    assert state.last_seq == 3


def test_upcaster_registration_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "UPCASTERS", {})
    with pytest.raises(ValueError, match=r"unknown event type 'job\.exploded'"):
        upcaster("job.exploded", 0)
    with pytest.raises(ValueError, match=f"older version than the current {SCHEMA_VERSION}"):
        upcaster("task.removed", SCHEMA_VERSION)
    upcaster("task.removed", 0)(lambda raw: raw)
    with pytest.raises(ValueError, match="already registered"):
        upcaster("task.removed", 0)(lambda raw: raw)
