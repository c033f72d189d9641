"""Folding a job's events into progress: job state, task states per run, counts."""

from __future__ import annotations

from flame_sdk.client.progress import JobProgress, apply
from schemas.events import (
    JobStateChanged,
    JobStateChangedEvent,
    TaskAssigned,
    TaskAssignedEvent,
    TaskCreated,
    TaskCreatedEvent,
    TaskRemoved,
    TaskRemovedEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    WorkerRequested,
    WorkerRequestedEvent,
)
from schemas.states import JobState


def state(frm: JobState, to: JobState, seq: int, reason: str = "") -> JobStateChangedEvent:
    payload = JobStateChanged(from_state=frm, to_state=to, reason=reason)
    return JobStateChangedEvent(payload=payload, job_id="j", seq=seq)


def status(task: str, st: JobState, seq: int) -> TaskStatusChangedEvent:
    payload = TaskStatusChanged(state=st)
    return TaskStatusChangedEvent(payload=payload, job_id="j", task_id=task, seq=seq)


def created(task: str, seq: int) -> TaskCreatedEvent:
    payload = TaskCreated(role="trainer", compute_id="default")
    return TaskCreatedEvent(payload=payload, job_id="j", task_id=task, seq=seq)


def test_fold_tracks_job_and_tasks() -> None:
    p = JobProgress(job_id="j")
    for e in [
        created("a", 1),
        created("b", 2),
        state(JobState.READY, JobState.STARTING, 3),
        status("a", JobState.RUNNING, 4),
        status("b", JobState.COMPLETED, 5),
    ]:
        p = apply(p, e)
    assert p.state is JobState.STARTING
    assert p.tasks == {"a": JobState.RUNNING, "b": JobState.COMPLETED}
    assert p.counts() == {JobState.RUNNING: 1, JobState.COMPLETED: 1}
    assert p.seq == 5 and not p.done
    p = apply(p, state(JobState.RUNNING, JobState.FAILED, 6, "role trainer failed"))
    assert (p.state, p.reason, p.done) == (JobState.FAILED, "role trainer failed", True)


def test_untracked_events_return_the_same_object() -> None:
    p = apply(JobProgress(job_id="j"), created("a", 1))
    requested = WorkerRequested(compute_id="c", task_ids=["a"])
    assert apply(p, WorkerRequestedEvent(payload=requested, job_id="j", seq=2)) is p
    assigned = TaskAssigned(agent_id="x")
    assert apply(p, TaskAssignedEvent(payload=assigned, job_id="j", task_id="a", seq=3)) is p


def test_a_new_run_resets_task_states_and_removed_tasks_go() -> None:
    p = JobProgress(job_id="j")
    for e in [
        created("a", 1),
        created("b", 2),
        status("a", JobState.COMPLETED, 3),
        status("b", JobState.FAILED, 4),
        state(JobState.FAILED, JobState.STARTING, 5),
    ]:
        p = apply(p, e)
    assert p.tasks == {"a": JobState.READY, "b": JobState.READY}
    p = apply(
        p, TaskRemovedEvent(payload=TaskRemoved(reason="update"), job_id="j", task_id="b", seq=6)
    )
    assert p.tasks == {"a": JobState.READY}
