"""Job progress folded from the job's event log: job state plus the state of every task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from schemas.events import (
    EventBase,
    JobStateChangedEvent,
    TaskCreatedEvent,
    TaskRemovedEvent,
    TaskStatusChangedEvent,
)
from schemas.states import JobState


@dataclass(frozen=True)
class JobProgress:
    """A snapshot of one job; `event` is the event that produced it (None for a fetched one)."""

    job_id: str
    state: JobState = JobState.READY
    reason: str = ""
    tasks: dict[str, JobState] = field(default_factory=dict)
    seq: int = 0
    event: EventBase | None = None

    @property
    def done(self) -> bool:
        return self.state.is_terminal

    def counts(self) -> dict[JobState, int]:
        """Number of tasks per state, in JobState order, states without tasks left out."""
        tally = Counter(self.tasks.values())
        return {s: tally[s] for s in JobState if tally[s]}


def apply(progress: JobProgress, event: EventBase) -> JobProgress:
    """The progress after `event`; the same object when the event changes nothing we track."""
    seq = max(progress.seq, event.seq or 0)
    tasks = progress.tasks
    if isinstance(event, JobStateChangedEvent):
        change = event.payload
        if change.to_state is JobState.STARTING:  # a new run: every task starts over
            tasks = dict.fromkeys(tasks, JobState.READY)
        return replace(
            progress,
            state=change.to_state,
            reason=change.reason,
            tasks=tasks,
            seq=seq,
            event=event,
        )
    if event.task_id is None:
        return progress
    if isinstance(event, TaskCreatedEvent):
        tasks = {**tasks, event.task_id: JobState.READY}
    elif isinstance(event, TaskRemovedEvent):
        tasks = {k: v for k, v in tasks.items() if k != event.task_id}
    elif isinstance(event, TaskStatusChangedEvent):
        tasks = {**tasks, event.task_id: event.payload.state}
    else:
        return progress
    return replace(progress, tasks=tasks, seq=seq, event=event)
