"""Folding a job's events into progress: job state, task states per run, counts."""

from __future__ import annotations

from flame_sdk.client.progress import JobProgress, apply
from schemas.events import make_event
from schemas.states import JobState


def ev(type_: str, payload: dict[str, object], seq: int, task: str | None = None):  # type: ignore[no-untyped-def]
    return make_event(type_, payload, job_id="j", task_id=task, seq=seq)


def state(frm: JobState, to: JobState, seq: int, reason: str = ""):  # type: ignore[no-untyped-def]
    return ev("job.state_changed", {"from_state": frm, "to_state": to, "reason": reason}, seq)


def status(task: str, st: JobState, seq: int):  # type: ignore[no-untyped-def]
    return ev("task.status_changed", {"state": st}, seq, task)


def created(task: str, seq: int):  # type: ignore[no-untyped-def]
    return ev("task.created", {"role": "trainer", "compute_id": "default"}, seq, task)


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
    assert apply(p, ev("worker.requested", {"compute_id": "c", "task_ids": ["a"]}, 2)) is p
    assert apply(p, ev("task.assigned", {"agent_id": "x"}, 3, "a")) is p


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
    p = apply(p, ev("task.removed", {"reason": "update"}, 6, "b"))
    assert p.tasks == {"a": JobState.READY}
