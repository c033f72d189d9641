"""The job and task projections as plain fields (pure): what every store adapter writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flame_controller.expansion import PlannedTask
from flame_controller.ports import UnfoldableLog
from flame_controller.state import JobView
from schemas.events import (
    AgentRegisteredEvent,
    EventBase,
    JobStateChangedEvent,
    TaskStatusChangedEvent,
)
from schemas.states import JobState


def job_fields(s: JobView, grace: float, deploy_timeout: float | None = None) -> dict[str, Any]:
    """The job projection's fields that follow the log (`user_id`/`design_id` are set at create)."""
    return {
        "job_id": s.job_id,
        "name": s.spec.name,
        "spec": s.spec.model_dump(mode="json", by_alias=True),
        "state": s.state.value,
        "reason": s.reason,
        "task_count": len(s.tasks),
        "created_at": s.created_at,
        "started_at": s.started_at,
        "updated_at": s.updated_at,
        "ended_at": s.ended_at,
        "deadline_at": s.deadline(grace, deploy_timeout),
        "last_seq": s.last_seq,
    }


def projectable(
    job_id: str, state: JobView | None, grace: float, deploy_timeout: float | None = None
) -> JobView | None:
    """A replayed `state`, once its projection is known to compute (its deadline in range)."""
    if state is not None:
        try:
            job_fields(state, grace, deploy_timeout)
        except Exception as exc:
            raise UnfoldableLog(job_id, state.last_seq, exc) from exc
    return state


def quarantined_fields(reason: str, at: datetime) -> dict[str, Any]:
    """The job projection of a quarantined job (its log cannot be replayed): failed, no deadline."""
    return {
        "state": JobState.FAILED.value,
        "reason": f"quarantined: {reason}",
        "updated_at": at,
        "ended_at": at,
        "deadline_at": None,
    }


def job_summary(s: JobView, grace: float, deploy_timeout: float | None = None) -> dict[str, Any]:
    """The job-level fields whose change makes the job projection worth rewriting."""
    fields = job_fields(s, grace, deploy_timeout)
    del fields["spec"], fields["last_seq"]
    return fields


def summary_changed(
    before: JobView, after: JobView, grace: float, deploy_timeout: float | None = None
) -> bool:
    """Whether the job projection must be rewritten after `before` became `after`."""
    return job_summary(before, grace, deploy_timeout) != job_summary(after, grace, deploy_timeout)


def new_task(job_id: str, t: PlannedTask, key: str) -> dict[str, Any]:
    """A fresh task projection; its `config` is the wire config including `taskid`."""
    return {
        "job_id": job_id,
        "task_id": t.task_id,
        "role": t.role,
        "group_association": t.group_association,
        "compute_id": t.compute_id,
        "key": key,
        "state": JobState.READY.value,
        "log": "",
        "exit_code": None,
        "log_size": None,
        "log_tail_at": None,
        "agent_id": "",
        "dataset": t.dataset,
        "config": t.config.model_copy(update={"taskid": t.task_id}).to_wire(),
        "timestamp": now(),
        "broker_user": "",
        "broker_password": "",
        "broker_sorts": [],
    }


def task_change(e: EventBase) -> dict[str, Any] | None:
    """What a task event sets on its task (None: the event changes no single task)."""
    if isinstance(e, TaskStatusChangedEvent):
        p = e.payload
        fields: dict[str, Any] = {
            "state": p.state.value,
            "exit_code": p.exit_code,
            "log_size": p.log_size,
            "log_tail_at": p.log_tail_at,
        }
        if p.log_tail or p.reason:  # a report without a log keeps the previous one
            fields["log"] = p.log_tail or p.reason
        return fields
    if isinstance(e, AgentRegisteredEvent):
        return {"agent_id": e.payload.agent_id}
    return None


def start_reset(e: EventBase) -> dict[str, Any] | None:
    """What a (re)start sets on every task of the job (None: `e` is not a start)."""
    if not isinstance(e, JobStateChangedEvent) or e.payload.to_state is not JobState.STARTING:
        return None
    reset: dict[str, Any] = {
        "state": JobState.READY.value,
        "log": "",
        "exit_code": None,
        "log_size": None,
        "log_tail_at": None,
    }
    if e.payload.from_state.is_terminal:  # a re-run: the previous run's agents are gone
        reset["agent_id"] = ""
    return reset


def now() -> datetime:
    return datetime.now(UTC)
