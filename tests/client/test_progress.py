"""Folding a job's events into progress: job state, task states per run, counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flame_sdk.client.progress import JobProgress, apply
from schemas.events import (
    JobStateChanged,
    JobStateChangedEvent,
    MetricsRecord,
    TaskAssigned,
    TaskAssignedEvent,
    TaskCreated,
    TaskCreatedEvent,
    TaskMetrics,
    TaskMetricsEvent,
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


def metrics(task: str, seq: int, at: datetime, *rounds: tuple[int, float]) -> TaskMetricsEvent:
    records = [
        MetricsRecord(round=r, metrics={"test_accuracy": a, "train.runtime": 1.0})
        for r, a in rounds
    ]
    return TaskMetricsEvent(
        payload=TaskMetrics(records=records), job_id="j", task_id=task, seq=seq, occurred_at=at
    )


T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def started(seq: int, at: datetime) -> JobStateChangedEvent:
    payload = JobStateChanged(from_state=JobState.READY, to_state=JobState.STARTING)
    return JobStateChangedEvent(payload=payload, job_id="j", seq=seq, occurred_at=at)


def test_metrics_advance_each_roles_rounds_and_give_an_eta() -> None:
    p = JobProgress(job_id="j")
    for e in [
        created("a", 1),
        created("b", 2),
        started(3, T0),
        metrics("a", 4, T0 + timedelta(seconds=10), (1, 0.5)),
        metrics("b", 5, T0 + timedelta(seconds=20), (1, 0.4), (2, 0.6)),
        metrics("a", 6, T0 + timedelta(seconds=21), (1, 0.5)),  # behind b: not the role's latest
    ]:
        p = apply(p, e)
    assert p.training["trainer"].round == 2
    assert p.training["trainer"].metrics["test_accuracy"] == 0.6
    assert p.eta("trainer", 10) == timedelta(seconds=80)  # 10 s a round, 8 to go
    assert p.eta("trainer", 2) == timedelta(0) and p.eta("nobody", 10) is None
    rerun = apply(p, started(7, T0 + timedelta(minutes=5)))
    assert rerun.training == {} and rerun.started_at == T0 + timedelta(minutes=5)
