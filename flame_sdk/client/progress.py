"""Job progress folded from the job's event log: job state, every task's state, and how far each
role's training got (the rounds and latest metrics of its task.metrics events)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from schemas.events import (
    EventBase,
    JobStateChangedEvent,
    TaskCreatedEvent,
    TaskMetricsEvent,
    TaskRemovedEvent,
    TaskStatusChangedEvent,
)
from schemas.states import JobState


@dataclass(frozen=True)
class RoleRounds:
    """How far one role's training got: the highest round its tasks reported, with the metrics
    of that report and when it was made."""

    round: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    at: datetime | None = None


@dataclass(frozen=True)
class JobProgress:
    """A snapshot of one job; `event` is the event that produced it (None for a fetched one)."""

    job_id: str
    state: JobState = JobState.READY
    reason: str = ""
    tasks: dict[str, JobState] = field(default_factory=dict)
    seq: int = 0
    event: EventBase | None = None
    roles: dict[str, str] = field(default_factory=dict)  # task id -> role
    training: dict[str, RoleRounds] = field(default_factory=dict)  # role -> its progress
    started_at: datetime | None = None  # when the current run started

    @property
    def done(self) -> bool:
        return self.state.is_terminal

    def counts(self) -> dict[JobState, int]:
        """Number of tasks per state, in JobState order, states without tasks left out."""
        tally = Counter(self.tasks.values())
        return {s: tally[s] for s in JobState if tally[s]}

    def eta(self, role: str, total_rounds: int) -> timedelta | None:
        """Time left for `role` to reach `total_rounds`, at the pace of its rounds so far."""
        done = self.training.get(role)
        if done is None or done.at is None or self.started_at is None or done.round <= 0:
            return None
        if done.round >= total_rounds:
            return timedelta(0)
        per_round = (done.at - self.started_at) / done.round
        return per_round * (total_rounds - done.round)


def apply(progress: JobProgress, event: EventBase) -> JobProgress:
    """The progress after `event`; the same object when the event changes nothing we track."""
    seq = max(progress.seq, event.seq or 0)
    tasks = progress.tasks
    if isinstance(event, JobStateChangedEvent):
        change = event.payload
        started, training = progress.started_at, progress.training
        if change.to_state is JobState.STARTING:  # a new run: every task starts over
            tasks = dict.fromkeys(tasks, JobState.READY)
            started, training = event.occurred_at, {}
        return replace(
            progress,
            state=change.to_state,
            reason=change.reason,
            tasks=tasks,
            seq=seq,
            event=event,
            training=training,
            started_at=started,
        )
    if event.task_id is None:
        return progress
    if isinstance(event, TaskMetricsEvent):
        return replace(progress, training=_trained(progress, event), seq=seq, event=event)
    if isinstance(event, TaskCreatedEvent):
        tasks = {**tasks, event.task_id: JobState.READY}
        progress = replace(progress, roles={**progress.roles, event.task_id: event.payload.role})
    elif isinstance(event, TaskRemovedEvent):
        tasks = {k: v for k, v in tasks.items() if k != event.task_id}
    elif isinstance(event, TaskStatusChangedEvent):
        tasks = {**tasks, event.task_id: event.payload.state}
    else:
        return progress
    return replace(progress, tasks=tasks, seq=seq, event=event)


def _trained(progress: JobProgress, event: TaskMetricsEvent) -> dict[str, RoleRounds]:
    role = progress.roles.get(event.task_id or "", "")
    last = max(event.payload.records, key=lambda r: r.round)
    known = progress.training.get(role)
    if known is not None and known.round > last.round:  # another task of the role is ahead
        return progress.training
    return {**progress.training, role: RoleRounds(last.round, last.metrics, event.occurred_at)}
