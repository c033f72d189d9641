"""Job state folded from its events (`evolve(state, event) -> state`) and the transition table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from schemas.events import (
    AgentRegisteredEvent,
    EventBase,
    JobCreatedEvent,
    JobDeletedEvent,
    JobStateChangedEvent,
    JobUpdatedEvent,
    TaskCreatedEvent,
    TaskRemovedEvent,
    TaskStatusChangedEvent,
    WorkerReleasedEvent,
    WorkerRequestedEvent,
)
from schemas.job import JobSpec
from schemas.states import TERMINAL_STATES, JobState

ACTIVE_STATES = frozenset({JobState.STARTING, JobState.DEPLOYING, JobState.RUNNING})

# Legal job transitions: the single source of truth for what may follow what.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        JobState.READY: frozenset({JobState.STARTING}),
        JobState.STARTING: frozenset(
            {JobState.DEPLOYING, JobState.STOPPING, JobState.FAILED, JobState.TERMINATED}
        ),
        JobState.DEPLOYING: frozenset(
            {JobState.RUNNING, JobState.STOPPING, JobState.FAILED, JobState.COMPLETED}
        ),
        JobState.RUNNING: frozenset({JobState.STOPPING, JobState.FAILED, JobState.COMPLETED}),
        JobState.STOPPING: frozenset({JobState.TERMINATED}),
        JobState.APPLYING: frozenset(),
        # A finished job may be re-run as is, or updated (back to ready).
        JobState.COMPLETED: frozenset({JobState.STARTING, JobState.READY}),
        JobState.FAILED: frozenset({JobState.STARTING, JobState.READY}),
        JobState.TERMINATED: frozenset({JobState.STARTING, JobState.READY}),
    }
)

# States in which the spec may be replaced or the job deleted.
EDITABLE_STATES = frozenset({JobState.READY, *TERMINAL_STATES})


def can_transition(current: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[current]


@dataclass(frozen=True)
class TaskView:
    """What the state machine tracks of one task."""

    task_id: str
    role: str
    compute_id: str
    state: JobState = JobState.READY
    agent_id: str = ""

    @property
    def live(self) -> bool:
        return not self.state.is_terminal


@dataclass(frozen=True)
class JobView:
    """A job folded from its event stream; treat as immutable (evolve returns a new one)."""

    job_id: str
    user_id: str
    spec: JobSpec
    state: JobState = JobState.READY
    reason: str = ""
    tasks: Mapping[str, TaskView] = field(default_factory=dict)
    # How many tasks of each role are in each state: derived from `tasks`, kept in step by evolve.
    census: Mapping[tuple[str, JobState], int] = field(default_factory=dict)
    requested_computes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    stopping_since: datetime | None = None
    deleted: bool = False
    last_seq: int = 0

    def live_tasks(self) -> list[TaskView]:
        return [t for t in self.tasks.values() if t.live]

    def count(self, state: JobState, role: str | None = None) -> int:
        """Tasks in `state` (of `role`, or of every role)."""
        return sum(n for (r, st), n in self.census.items() if st is state and role in (None, r))

    def roles(self) -> list[str]:
        return sorted({r for r, _ in self.census})

    def live_count(self) -> int:
        return sum(n for (_, st), n in self.census.items() if not st.is_terminal)

    def deadline(
        self, stop_grace_seconds: float, deploy_timeout: float | None = None
    ) -> datetime | None:
        """When the timer must act: maxRunTime (or, sooner, the deploy timeout while a task of
        a managed compute has no agent) while active, the stop grace while stopping."""
        if self.state in ACTIVE_STATES and self.started_at is not None:
            run = self.started_at + timedelta(seconds=self.spec.max_run_time)
            deploy = self.deploy_deadline(deploy_timeout)
            return run if deploy is None else min(run, deploy)
        if self.state is JobState.STOPPING and self.stopping_since is not None:
            return self.stopping_since + timedelta(seconds=stop_grace_seconds)
        return None

    def undeployed(self) -> dict[str, list[str]]:
        """Live tasks of the computes asked for workers whose agent has not registered yet, by
        compute (tasks of unmanaged computes wait for agents started by hand: never listed)."""
        waiting: dict[str, list[str]] = {}
        for compute_id, task_ids in sorted(self.requested_computes.items()):
            ids = [t for t in task_ids if (v := self.tasks.get(t)) and v.live and not v.agent_id]
            if ids:
                waiting[compute_id] = ids
        return waiting

    def deploy_deadline(self, deploy_timeout: float | None) -> datetime | None:
        """When an active job still missing agents of managed computes fails (None: it misses
        none, or no timeout)."""
        if deploy_timeout is None or self.started_at is None or self.state not in ACTIVE_STATES:
            return None
        if not self.undeployed():
            return None
        return self.started_at + timedelta(seconds=deploy_timeout)


def initial(event: JobCreatedEvent) -> JobView:
    """The state a `job.created` event opens."""
    p = event.payload
    assert event.job_id is not None
    return JobView(
        job_id=event.job_id, user_id=p.user_id, spec=p.spec, created_at=event.occurred_at
    )


def evolve(state: JobView | None, event: EventBase) -> JobView:
    """Apply one event; events that do not change the state leave it as is (but advance seq)."""
    if state is None:
        if not isinstance(event, JobCreatedEvent):
            raise ValueError(f"a job stream must start with job.created, not {event.type}")
        state = initial(event)
    else:
        state = _apply(state, event)
    if event.seq is not None:
        state = replace(state, last_seq=event.seq)
    return state


def _apply(s: JobView, e: EventBase) -> JobView:
    match e:
        case JobUpdatedEvent(payload=p):
            return replace(s, spec=p.spec, updated_at=e.occurred_at)
        case JobDeletedEvent():
            return replace(s, deleted=True)
        case TaskCreatedEvent(payload=p):
            assert e.task_id is not None
            task = TaskView(task_id=e.task_id, role=p.role, compute_id=p.compute_id)
            if e.task_id in s.tasks:  # replaced: recount
                return _with_tasks(s, {**s.tasks, e.task_id: task})
            census = dict(s.census)
            census[(task.role, task.state)] = census.get((task.role, task.state), 0) + 1
            return replace(s, tasks={**s.tasks, e.task_id: task}, census=census)
        case TaskRemovedEvent():
            return _with_tasks(s, {k: v for k, v in s.tasks.items() if k != e.task_id})
        case TaskStatusChangedEvent(payload=p):
            return _with_task(s, e.task_id, state=p.state)
        case AgentRegisteredEvent(payload=p):
            return _with_task(s, e.task_id, agent_id=p.agent_id)
        case WorkerRequestedEvent(payload=p):
            requested = {**s.requested_computes, p.compute_id: tuple(p.task_ids)}
            return replace(s, requested_computes=requested)
        case WorkerReleasedEvent(payload=p):
            return replace(
                s,
                requested_computes={
                    k: v for k, v in s.requested_computes.items() if k != p.compute_id
                },
            )
        case JobStateChangedEvent(payload=p):
            return _changed_state(s, p.to_state, p.reason, e.occurred_at)
    return s


def _with_tasks(s: JobView, tasks: Mapping[str, TaskView]) -> JobView:
    census: dict[tuple[str, JobState], int] = {}
    for t in tasks.values():
        census[(t.role, t.state)] = census.get((t.role, t.state), 0) + 1
    return replace(s, tasks=tasks, census=census)


def _with_task(s: JobView, task_id: str | None, **changes: object) -> JobView:
    task = s.tasks.get(task_id or "")
    if task is None:
        return s
    new = replace(task, **changes)  # type: ignore[arg-type]
    census = dict(s.census)
    census[(task.role, task.state)] -= 1
    census[(new.role, new.state)] = census.get((new.role, new.state), 0) + 1
    return replace(s, tasks={**s.tasks, task.task_id: new}, census=census)


def _changed_state(s: JobView, to: JobState, reason: str, at: datetime) -> JobView:
    rerun = s.state.is_terminal
    s = replace(s, state=to, reason=reason)
    if to is JobState.STARTING:
        # A first start keeps agents that registered early; a re-run forgets the old ones.
        fresh = {
            k: replace(t, state=JobState.READY, agent_id="" if rerun else t.agent_id)
            for k, t in s.tasks.items()
        }
        s = _with_tasks(s, fresh)
        return replace(s, started_at=at, ended_at=None, stopping_since=None)
    if to is JobState.STOPPING:
        return replace(s, stopping_since=at)
    if to is JobState.READY:
        return replace(s, started_at=None, ended_at=None, stopping_since=None, reason="")
    if to.is_terminal:
        return replace(s, ended_at=at)
    return s
