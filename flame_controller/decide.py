"""The job state machine's decisions: `decide(state, command) -> list[events]` (pure).

Commands are what the controller is asked (create/update/delete/start/stop, a timer tick, an event
observed on the bus); the returned events are facts to append, in order, to the job's log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flame_controller.expansion import PlannedTask
from flame_controller.state import (
    ACTIVE_STATES,
    EDITABLE_STATES,
    JobView,
    TaskView,
    can_transition,
    evolve,
)
from schemas.errors import Conflict, Invalid, NotFound
from schemas.events import (
    AgentLostEvent,
    AgentRegisteredEvent,
    Envelope,
    EventBase,
    JobCreated,
    JobCreatedEvent,
    JobDeleted,
    JobDeletedEvent,
    JobStateChanged,
    JobStateChangedEvent,
    JobUpdated,
    JobUpdatedEvent,
    TaskAssigned,
    TaskAssignedEvent,
    TaskCreated,
    TaskCreatedEvent,
    TaskMetricsEvent,
    TaskRemoved,
    TaskRemovedEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    TaskStopRequested,
    TaskStopRequestedEvent,
    WorkerCreatedEvent,
    WorkerFailedEvent,
    WorkerReleased,
    WorkerReleasedEvent,
    WorkerRequested,
    WorkerRequestedEvent,
)
from schemas.job import JobSpec
from schemas.states import AGENT_REPORTABLE_STATES, JobState

SOURCE = "controller"


@dataclass(frozen=True)
class Create:
    job_id: str
    user_id: str
    spec: JobSpec
    tasks: Sequence[PlannedTask]


@dataclass(frozen=True)
class Update:
    spec: JobSpec
    tasks: Sequence[PlannedTask]


@dataclass(frozen=True)
class Delete:
    pass


@dataclass(frozen=True)
class Start:
    unmanaged_computes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Stop:
    reason: str = "stopped by user"


@dataclass(frozen=True)
class Tick:
    """The timer's look at a job: maxRunTime, deploy-timeout and stop-grace deadlines."""

    now: datetime
    stop_grace_seconds: float
    deploy_timeout: float | None = None


@dataclass(frozen=True)
class Observe:
    """An event from agents, deployers or the apiserver (task status, worker.*, agent.*)."""

    event: EventBase


Command = Create | Update | Delete | Start | Stop | Tick | Observe


def decide(
    state: JobView | None, command: Command, correlation_id: str | None = None
) -> list[EventBase]:
    """What happens if `command` is applied to `state`; raises a FlameError if it may not."""
    return decide_folded(state, command, correlation_id)[0]


def decide_folded(
    state: JobView | None, command: Command, correlation_id: str | None = None
) -> tuple[list[EventBase], JobView]:
    """`decide`, plus `state` with the events folded in (their `seq`s are not assigned yet)."""
    if isinstance(command, Create):
        if state is not None and not state.deleted:
            raise Conflict(f"job {command.job_id} already exists")
        return _create(command, correlation_id)
    if state is None or state.deleted:
        raise NotFound("job not found")
    new = _Emitter(state, correlation_id)
    match command:
        case Update():
            _require_editable(state, "update")
            _update(new, command)
        case Delete():
            _require_editable(state, "delete")
            new.add(JobDeletedEvent(payload=JobDeleted(user_id=state.user_id), **new.envelope()))
        case Start():
            _require(state, JobState.STARTING, "start")
            _start(new, command)
        case Stop():
            _require(state, JobState.STOPPING, "stop")
            _stop(new, command.reason)
        case Tick():
            _tick(new, command)
        case Observe():
            _observe(new, command.event)
    return new.events, new.state


class _Emitter:
    """Collects events while folding them into a look-ahead state."""

    def __init__(self, state: JobView, correlation_id: str | None, cause: str | None = None):
        self.state = state
        self.events: list[EventBase] = []
        self.correlation_id = correlation_id
        self.cause = cause

    def add(self, event: EventBase) -> None:
        self.state = evolve(self.state, event)
        self.events.append(event)

    def envelope(self, task_id: str | None = None) -> Envelope:
        """The envelope fields of the next event (of the job, or of `task_id`)."""
        return Envelope(
            job_id=self.state.job_id,
            task_id=task_id,
            source=SOURCE,
            correlation_id=self.correlation_id,
            causation_id=self.cause,
        )

    def move(self, to: JobState, reason: str = "") -> None:
        payload = JobStateChanged(from_state=self.state.state, to_state=to, reason=reason)
        self.add(JobStateChangedEvent(payload=payload, **self.envelope()))


def _require(state: JobView, target: JobState, action: str) -> None:
    if not can_transition(state.state, target):
        raise Conflict(
            f"cannot {action} job {state.job_id}: it is {state.state}, "
            f"and {state.state} -> {target} is not allowed"
        )


def _require_editable(state: JobView, action: str) -> None:
    if state.state not in EDITABLE_STATES:
        allowed = ", ".join(sorted(EDITABLE_STATES))
        raise Conflict(
            f"cannot {action} job {state.job_id}: it is {state.state} "
            f"(allowed only when {allowed}); stop the job first"
        )


def _task_created(new: _Emitter, t: PlannedTask) -> None:
    payload = TaskCreated(
        role=t.role,
        group_association=t.group_association,
        compute_id=t.compute_id,
        dataset=t.dataset,
    )
    new.add(TaskCreatedEvent(payload=payload, **new.envelope(t.task_id)))


def _create(c: Create, correlation_id: str | None) -> tuple[list[EventBase], JobView]:
    created = JobCreatedEvent(
        payload=JobCreated(user_id=c.user_id, spec=c.spec, task_count=len(c.tasks)),
        job_id=c.job_id,
        source=SOURCE,
        correlation_id=correlation_id,
    )
    new = _Emitter(evolve(None, created), correlation_id)
    new.events.append(created)
    for t in c.tasks:
        _task_created(new, t)
    return new.events, new.state


def _update(new: _Emitter, c: Update) -> None:
    old = new.state
    payload = JobUpdated(user_id=old.user_id, spec=c.spec, task_count=len(c.tasks))
    new.add(JobUpdatedEvent(payload=payload, **new.envelope()))
    keep = {t.task_id for t in c.tasks}
    for task_id in sorted(set(old.tasks) - keep):
        removed = TaskRemoved(reason="not part of the updated job")
        new.add(TaskRemovedEvent(payload=removed, **new.envelope(task_id)))
    for t in c.tasks:
        _task_created(new, t)
    if old.state is not JobState.READY:
        new.move(JobState.READY, "job updated")


def _start(new: _Emitter, c: Start) -> None:
    new.move(JobState.STARTING)
    by_compute: dict[str, list[str]] = {}
    for t in new.state.tasks.values():
        by_compute.setdefault(t.compute_id, []).append(t.task_id)
    for compute_id in sorted(by_compute):
        if compute_id not in c.unmanaged_computes:
            payload = WorkerRequested(compute_id=compute_id, task_ids=by_compute[compute_id])
            new.add(WorkerRequestedEvent(payload=payload, **new.envelope()))
    new.move(JobState.DEPLOYING)
    for t in list(new.state.tasks.values()):
        if t.agent_id:
            _assign(new, t.task_id, t.agent_id)


def _stop(new: _Emitter, reason: str) -> None:
    new.move(JobState.STOPPING, reason)
    for t in new.state.live_tasks():
        _ask_stop(new, t.task_id, reason)
    _settle(new)


def _tick(new: _Emitter, c: Tick) -> None:
    deadline = new.state.deadline(c.stop_grace_seconds, c.deploy_timeout)
    if deadline is None or c.now < deadline:
        return
    deploy = new.state.deploy_deadline(c.deploy_timeout)
    if deploy is not None and c.now >= deploy and c.deploy_timeout is not None:
        reason = undeployed_reason(new.state.undeployed(), c.deploy_timeout)
        _finish(new, JobState.FAILED, reason, "job failed: tasks not deployed")
        return
    if new.state.state in ACTIVE_STATES:
        _stop(new, f"maxRunTime of {new.state.spec.max_run_time} s exceeded")
    else:  # stopping, and the agents did not confirm in time
        _finish(
            new,
            JobState.TERMINATED,
            new.state.reason,
            "no stop confirmation within the grace period",
        )


def undeployed_reason(waiting: dict[str, list[str]], timeout: float) -> str:
    """Why a job failed at its deploy timeout: which computes left how many tasks agentless."""
    parts = [f"{len(ids)} task(s) on compute '{c}'" for c, ids in waiting.items()]
    return (
        f"not deployed within {timeout:g} s: {', '.join(parts)} never got an agent "
        "(is a deployer of that compute running? `flame status`, FLAME_DEPLOY_TIMEOUT)"
    )


def _observe(new: _Emitter, e: EventBase) -> None:
    if e.job_id != new.state.job_id:
        raise Invalid(f"event {e.id} belongs to job {e.job_id}, not {new.state.job_id}")
    if not isinstance(e, _OBSERVED):
        raise Invalid(f"the controller does not consume {e.type} events")
    task = new.state.tasks.get(e.task_id or "")
    if task is None and (e.task_id or isinstance(e, _TASK_EVENTS)):
        raise NotFound(f"task {e.task_id} not found in job {new.state.job_id}")
    new.cause = e.id
    s = new.state
    if isinstance(e, TaskStatusChangedEvent):
        assert task is not None
        reported = e.payload.state
        if reported not in AGENT_REPORTABLE_STATES:
            raise Invalid(f"a task cannot report state {reported}")
        if s.state is JobState.READY:
            raise Conflict(f"job {s.job_id} is ready: it accepts task reports once started")
        if task.live and task.state != reported:  # else a duplicate or late report
            new.add(e)
            _settle(new)
        return
    new.add(e)  # task.metrics: appended to the job's log as it is (the job's training record)
    if isinstance(e, AgentRegisteredEvent):
        assert task is not None
        if s.state in ACTIVE_STATES and task.live:
            _assign(new, task.task_id, e.payload.agent_id)
    elif isinstance(e, AgentLostEvent):
        assert task is not None
        if s.state in _RUNNABLE and task.live:
            _fail_task(new, task.task_id, f"agent lost: {e.payload.reason}")
            _settle(new)
    elif isinstance(e, WorkerFailedEvent) and s.state in _RUNNABLE:
        targets = [task] if task else _waiting_on(s, e.payload.compute_id)
        for t in targets:
            if t.live:
                _fail_task(new, t.task_id, f"worker failed: {e.payload.reason}")
        _settle(new)


def _waiting_on(s: JobView, compute_id: str) -> list[TaskView]:
    return [t for t in s.tasks.values() if t.compute_id == compute_id and t.state is JobState.READY]


_OBSERVED = (
    TaskStatusChangedEvent,
    TaskMetricsEvent,
    AgentRegisteredEvent,
    AgentLostEvent,
    WorkerCreatedEvent,
    WorkerFailedEvent,
)
_TASK_EVENTS = (TaskStatusChangedEvent, TaskMetricsEvent, AgentRegisteredEvent, AgentLostEvent)
_RUNNABLE = frozenset({*ACTIVE_STATES, JobState.STOPPING})


def _assign(new: _Emitter, task_id: str, agent_id: str) -> None:
    new.add(TaskAssignedEvent(payload=TaskAssigned(agent_id=agent_id), **new.envelope(task_id)))


def _ask_stop(new: _Emitter, task_id: str, reason: str) -> None:
    payload = TaskStopRequested(reason=reason)
    new.add(TaskStopRequestedEvent(payload=payload, **new.envelope(task_id)))


def _close_task(new: _Emitter, task_id: str, state: JobState, reason: str) -> None:
    payload = TaskStatusChanged(state=state, reason=reason)
    new.add(TaskStatusChangedEvent(payload=payload, **new.envelope(task_id)))


def _fail_task(new: _Emitter, task_id: str, reason: str) -> None:
    _close_task(new, task_id, JobState.FAILED, reason)


def _settle(new: _Emitter) -> None:
    """Job rules after task changes (reference §5.3, fixed: per-task states, no counters)."""
    s = new.state
    if s.state is JobState.STOPPING:
        if not s.live_count():
            _finish(new, JobState.TERMINATED, s.reason, "")
        return
    if s.state not in ACTIVE_STATES:
        return
    if s.state is not JobState.RUNNING and s.count(JobState.RUNNING):
        new.move(JobState.RUNNING)
    s = new.state
    for role in s.roles():
        if s.count(JobState.FAILED, role) == sum(n for (r, _), n in s.census.items() if r == role):
            _finish(new, JobState.FAILED, f"all tasks of role {role} failed", "job failed")
            return
    if s.live_count():
        return
    for role in s.roles():
        if not s.count(JobState.COMPLETED, role):
            _finish(new, JobState.FAILED, f"no task of role {role} completed", "job failed")
            return
    _finish(new, JobState.COMPLETED, "", "")


def _finish(new: _Emitter, to: JobState, reason: str, task_reason: str) -> None:
    """End the job: stop and close live tasks, move to `to`, release workers."""
    already_asked = new.state.state is JobState.STOPPING
    for t in new.state.live_tasks():
        if not already_asked:
            _ask_stop(new, t.task_id, task_reason)
        _close_task(new, t.task_id, JobState.TERMINATED, task_reason)
    new.move(to, reason)
    for compute_id, task_ids in sorted(new.state.requested_computes.items()):
        payload = WorkerReleased(compute_id=compute_id, task_ids=list(task_ids))
        new.add(WorkerReleasedEvent(payload=payload, **new.envelope()))
