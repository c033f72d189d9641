"""The job state machine: decide/evolve over a small job, without fixtures or I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flame_controller.decide import Create, Delete, Observe, Start, Stop, Tick, Update, decide
from flame_controller.expansion import DatasetRef, PlannedTask, expand
from flame_controller.state import TRANSITIONS, JobView, evolve
from schemas.design import DesignSchema
from schemas.errors import Conflict, Invalid, NotFound
from schemas.events import (
    AgentLost,
    AgentLostEvent,
    AgentRegistered,
    AgentRegisteredEvent,
    EventBase,
    JobStateChangedEvent,
    MetricsRecord,
    TaskMetrics,
    TaskMetricsEvent,
    TaskStatusChanged,
    TaskStatusChangedEvent,
    WorkerFailed,
    WorkerFailedEvent,
)
from schemas.job import JobSpec
from schemas.states import JobState

JOB = "64145f7c10b9b3b94f5252bd"
SCHEMA = DesignSchema.model_validate(
    {
        "name": "fl",
        "roles": [
            {"name": "trainer", "isDataConsumer": True, "groupAssociation": [{"ch": "g"}]},
            {"name": "aggregator", "groupAssociation": [{"ch": "g"}]},
        ],
        "channels": [
            {"name": "ch", "pair": ["trainer", "aggregator"], "groupBy": {"value": ["g"]}}
        ],
    }
)
DATASETS = {
    f"d{i}": DatasetRef(f"d{i}", "alice", f"file:///d{i}", "edge" if i == 2 else "default", True)
    for i in range(3)
}


def _spec(**changes: Any) -> JobSpec:
    data = {
        "id": JOB,
        "userId": "alice",
        "name": "job",
        "designId": "fl",
        "backend": "mqtt",
        "maxRunTime": 60,
        "dataSpec": [{"role": "trainer", "datasetGroups": {"g": ["d0", "d1", "d2"]}}],
    }
    data.update(changes)
    return JobSpec.model_validate(data)


def _tasks(spec: JobSpec) -> list[PlannedTask]:
    return expand(spec, SCHEMA, frozenset({"trainer", "aggregator"}), DATASETS)


class Job:
    """Drives one job through decide/evolve and keeps its log."""

    def __init__(self) -> None:
        spec = _spec()
        self.log: list[EventBase] = []
        self.state: JobView | None = None
        self.run(Create(JOB, "alice", spec, _tasks(spec)))
        assert self.state is not None
        self.aggregator, *self.trainers = list(self.state.tasks)

    def run(self, command: Any) -> list[EventBase]:
        events = decide(self.state, command)
        for e in events:
            e = e.model_copy(update={"seq": len(self.log) + 1})
            self.state = evolve(self.state, e)
            self.log.append(e)
        return events

    def report(self, task_id: str, state: JobState, event_id: str | None = None) -> list[EventBase]:
        extra = {"id": event_id} if event_id else {}
        payload = TaskStatusChanged(state=state)
        ev = TaskStatusChangedEvent(payload=payload, job_id=JOB, task_id=task_id, **extra)
        return self.run(Observe(ev))

    @property
    def s(self) -> JobView:
        assert self.state is not None
        return self.state

    def types(self, events: list[EventBase]) -> list[str]:
        return [e.type for e in events]

    def moves(self) -> list[tuple[str, str]]:
        return [
            (e.payload.from_state, e.payload.to_state)
            for e in self.log
            if isinstance(e, JobStateChangedEvent)
        ]


def test_create_emits_job_and_task_events() -> None:
    job = Job()
    assert job.types(job.log) == ["job.created"] + ["task.created"] * 4
    assert job.s.state is JobState.READY and len(job.s.tasks) == 4


def test_happy_path_to_completed() -> None:
    job = Job()
    started = job.run(Start())
    assert job.types(started) == [
        "job.state_changed",
        "worker.requested",
        "worker.requested",
        "job.state_changed",
    ]
    requested = {e.payload.compute_id: e.payload.task_ids for e in started[1:3]}
    assert requested == {"default": [job.aggregator, *job.trainers[:2]], "edge": [job.trainers[2]]}
    assert job.s.state is JobState.DEPLOYING
    job.report(job.trainers[0], JobState.RUNNING)
    assert job.s.state is JobState.RUNNING
    for t in [job.aggregator, *job.trainers]:
        job.report(t, JobState.RUNNING)
    for t in job.trainers:
        job.report(t, JobState.COMPLETED)
    assert job.s.state is JobState.RUNNING  # the aggregator is still running
    end = job.report(job.aggregator, JobState.COMPLETED)
    assert job.types(end) == ["task.status_changed", "job.state_changed"] + ["worker.released"] * 2
    assert job.s.state is JobState.COMPLETED
    assert job.moves() == [
        ("ready", "starting"),
        ("starting", "deploying"),
        ("deploying", "running"),
        ("running", "completed"),
    ]
    assert job.s.ended_at is not None


def test_unmanaged_computes_get_no_worker_request() -> None:
    job = Job()
    started = job.run(Start(unmanaged_computes=frozenset({"edge"})))
    assert [e.payload.compute_id for e in started if e.type == "worker.requested"] == ["default"]


def test_duplicate_reports_are_not_double_counted() -> None:
    job = Job()
    job.run(Start())
    for t in [job.aggregator, *job.trainers]:
        job.report(t, JobState.RUNNING)
    # Flame counted this failure twice and failed the role "all failed" early; we do not.
    job.report(job.trainers[0], JobState.FAILED)
    assert job.report(job.trainers[0], JobState.FAILED) == []
    assert job.report(job.trainers[0], JobState.RUNNING) == []  # late report after a terminal one
    job.report(job.trainers[1], JobState.FAILED)
    assert job.s.state is JobState.RUNNING
    job.report(job.trainers[2], JobState.COMPLETED)
    job.report(job.aggregator, JobState.COMPLETED)
    assert job.s.state is JobState.COMPLETED  # failed trainers are tolerated


def test_completion_waits_for_tasks_that_never_reported() -> None:
    job = Job()
    job.run(Start())
    job.report(job.trainers[0], JobState.COMPLETED)  # before the aggregator reported running
    assert job.s.state is JobState.DEPLOYING  # Flame would fail the job here


def test_all_trainers_failed_fails_the_job_and_stops_the_rest() -> None:
    job = Job()
    job.run(Start())
    job.report(job.aggregator, JobState.RUNNING)
    for t in job.trainers[:2]:
        job.report(t, JobState.FAILED)
    end = job.report(job.trainers[2], JobState.FAILED)
    assert job.s.state is JobState.FAILED
    assert job.s.reason == "all tasks of role trainer failed"
    assert job.types(end)[:3] == [
        "task.status_changed",
        "task.stop_requested",
        "task.status_changed",
    ]
    assert end[1].task_id == job.aggregator
    assert job.s.tasks[job.aggregator].state is JobState.TERMINATED
    assert [e.type for e in end[-2:]] == ["worker.released"] * 2


def test_no_completed_task_in_a_role_fails_the_job() -> None:
    job = Job()
    job.run(Start())
    for t in job.trainers:
        job.report(t, JobState.COMPLETED)
    job.report(job.aggregator, JobState.TERMINATED)
    assert job.s.state is JobState.FAILED
    assert job.s.reason == "no task of role aggregator completed"


def test_stop_requests_every_live_task_then_terminates() -> None:
    job = Job()
    job.run(Start())
    job.report(job.aggregator, JobState.RUNNING)
    job.report(job.trainers[0], JobState.COMPLETED)
    stopped = job.run(Stop())
    assert job.s.state is JobState.STOPPING
    asked = [e.task_id for e in stopped if e.type == "task.stop_requested"]
    assert asked == [job.aggregator, *job.trainers[1:]]
    for t in asked[:-1]:
        job.report(t, JobState.TERMINATED)
    assert job.s.state is JobState.STOPPING
    job.report(asked[-1], JobState.TERMINATED)
    assert job.s.state is JobState.TERMINATED and job.s.reason == "stopped by user"


def test_stop_grace_expiry_forces_termination() -> None:
    job = Job()
    job.run(Start())
    job.run(Stop())
    since = job.s.stopping_since
    assert since is not None
    assert job.run(Tick(since + timedelta(seconds=1), stop_grace_seconds=5)) == []
    forced = job.run(Tick(since + timedelta(seconds=5), stop_grace_seconds=5))
    assert job.types(forced).count("task.stop_requested") == 0  # they were asked already
    assert job.types(forced).count("task.status_changed") == 4
    assert job.s.state is JobState.TERMINATED
    assert all(t.state is JobState.TERMINATED for t in job.s.tasks.values())


def test_max_run_time_expiry_stops_then_terminates_with_reason() -> None:
    job = Job()
    job.run(Start())
    started = job.s.started_at
    assert started is not None and job.s.deadline(5) == started + timedelta(seconds=60)
    assert job.run(Tick(started + timedelta(seconds=59), 5)) == []
    timed_out = job.run(Tick(started + timedelta(seconds=60), 5))
    assert job.types(timed_out).count("task.stop_requested") == 4
    assert job.s.state is JobState.STOPPING
    for t in job.s.tasks:
        job.report(t, JobState.TERMINATED)
    assert job.s.state is JobState.TERMINATED
    assert job.s.reason == "maxRunTime of 60 s exceeded"
    assert job.s.deadline(5) is None


def test_max_run_time_absent_or_zero_defaults_to_600() -> None:
    assert _spec(maxRunTime=0).max_run_time == 600
    data = _spec().wire()
    del data["maxRunTime"]
    assert JobSpec.model_validate(data).max_run_time == 600


@pytest.mark.parametrize(
    ("prepare", "command", "message"),
    [
        (
            [],
            Stop(),
            "cannot stop job 64145f7c10b9b3b94f5252bd: it is ready, and ready -> stopping",
        ),
        ([Start()], Start(), "cannot start job 64145f7c10b9b3b94f5252bd: it is deploying"),
        ([Start(), Stop()], Stop(), "it is stopping, and stopping -> stopping is not allowed"),
        ([Start()], Delete(), "cannot delete job 64145f7c10b9b3b94f5252bd: it is deploying"),
        (
            [Start()],
            Update(_spec(), []),
            "cannot update job 64145f7c10b9b3b94f5252bd: it is deploying",
        ),
    ],
)
def test_illegal_transitions_are_conflicts(prepare: list[Any], command: Any, message: str) -> None:
    job = Job()
    for c in prepare:
        job.run(c)
    with pytest.raises(Conflict, match=message):
        job.run(command)


def test_transition_table_never_leaves_a_terminal_state_except_to_rerun_or_update() -> None:
    for s in (JobState.COMPLETED, JobState.FAILED, JobState.TERMINATED):
        assert TRANSITIONS[s] == {JobState.STARTING, JobState.READY}


def test_reports_before_start_and_for_unknown_tasks_are_rejected() -> None:
    job = Job()
    with pytest.raises(Conflict, match="is ready"):
        job.report(job.trainers[0], JobState.RUNNING)
    job.run(Start())
    with pytest.raises(NotFound, match="task nope not found"):
        job.report("nope", JobState.RUNNING)
    with pytest.raises(Invalid, match="cannot report state starting"):
        job.report(job.trainers[0], JobState.STARTING)


def test_agent_registered_before_and_after_start_gets_assigned() -> None:
    job = Job()
    early = AgentRegisteredEvent(
        payload=AgentRegistered(agent_id="a1"), job_id=JOB, task_id=job.trainers[0]
    )
    assert job.types(job.run(Observe(early))) == ["agent.registered"]
    started = job.run(Start())
    assigned = [e for e in started if e.type == "task.assigned"]
    assert [(e.task_id, e.payload.agent_id) for e in assigned] == [(job.trainers[0], "a1")]
    late = AgentRegisteredEvent(
        payload=AgentRegistered(agent_id="a2"), job_id=JOB, task_id=job.trainers[1]
    )
    assert job.types(job.run(Observe(late))) == ["agent.registered", "task.assigned"]


def test_agent_lost_fails_its_task() -> None:
    job = Job()
    job.run(Start())
    job.report(job.aggregator, JobState.RUNNING)
    lost = AgentLostEvent(
        payload=AgentLost(agent_id="a", reason="no heartbeat"),
        job_id=JOB,
        task_id=job.aggregator,
    )
    events = job.run(Observe(lost))
    assert job.s.state is JobState.FAILED
    assert events[1].payload.reason == "agent lost: no heartbeat"


def test_worker_failed_fails_the_waiting_tasks_of_its_compute() -> None:
    job = Job()
    job.run(Start())
    failed = WorkerFailedEvent(payload=WorkerFailed(compute_id="edge", reason="boom"), job_id=JOB)
    events = job.run(Observe(failed))
    assert [e.task_id for e in events if e.type == "task.status_changed"] == [job.trainers[2]]
    assert job.s.state is JobState.DEPLOYING


def test_update_replaces_tasks_and_resets_a_finished_job() -> None:
    job = Job()
    job.run(Start())
    job.run(Stop())
    job.run(Tick(job.s.stopping_since + timedelta(seconds=9), 5))  # type: ignore[operator]
    spec = _spec(dataSpec=[{"role": "trainer", "datasetGroups": {"g": ["d0"]}}])
    events = job.run(Update(spec, _tasks(spec)))
    assert job.types(events).count("task.removed") == 2
    assert job.s.state is JobState.READY and len(job.s.tasks) == 2
    assert all(t.state is JobState.READY for t in job.s.tasks.values())


def test_delete_and_then_everything_is_not_found() -> None:
    job = Job()
    assert job.types(job.run(Delete())) == ["job.deleted"]
    with pytest.raises(NotFound):
        job.run(Start())


def test_rerun_of_a_finished_job_starts_fresh() -> None:
    job = Job()
    job.run(Start())
    job.run(Stop())
    for t in job.s.tasks:
        job.report(t, JobState.TERMINATED)
    job.run(Start())
    assert job.s.state is JobState.DEPLOYING
    assert all(t.state is JobState.READY for t in job.s.tasks.values())


def test_task_metrics_are_logged_as_they_are_and_change_nothing() -> None:
    job = Job()
    job.run(Start())
    before = job.s
    records = [MetricsRecord(round=1, metrics={"test_accuracy": 0.5})]
    event = TaskMetricsEvent(
        payload=TaskMetrics(records=records), job_id=JOB, task_id=job.trainers[0]
    )
    assert job.run(Observe(event)) == [event]
    assert job.log[-1] == event.model_copy(update={"seq": len(job.log)})
    assert (job.s.state, job.s.tasks) == (before.state, before.tasks)
    stranger = event.model_copy(update={"task_id": "nope"})
    with pytest.raises(NotFound, match="task nope not found"):
        job.run(Observe(stranger))


def _register(job: Job, task_id: str) -> None:
    payload = AgentRegistered(agent_id=f"agent-{task_id[:6]}", hostname="h", pid=1)
    job.run(Observe(AgentRegisteredEvent(payload=payload, job_id=JOB, task_id=task_id)))


def test_a_compute_nobody_deploys_to_fails_the_job_at_the_deploy_timeout_naming_it() -> None:
    job = Job()
    job.run(Start())
    started = job.s.started_at
    assert started is not None
    assert job.s.deadline(5, deploy_timeout=30) == started + timedelta(seconds=30)
    for task_id in (job.aggregator, *job.trainers[:2]):  # compute 'default' deploys; 'edge' not
        _register(job, task_id)
    assert job.s.undeployed() == {"edge": [job.trainers[2]]}
    assert job.run(Tick(started + timedelta(seconds=29), 5, deploy_timeout=30)) == []
    failed = job.run(Tick(started + timedelta(seconds=30), 5, deploy_timeout=30))
    assert job.types(failed).count("task.stop_requested") == 4
    assert job.s.state is JobState.FAILED
    assert job.s.reason.startswith(
        "not deployed within 30 s: 1 task(s) on compute 'edge' never got an agent"
    )
    assert job.s.deadline(5, deploy_timeout=30) is None


def test_once_every_agent_registered_only_max_run_time_bounds_the_job() -> None:
    job = Job()
    job.run(Start())
    started = job.s.started_at
    assert started is not None
    for task_id in job.s.tasks:
        _register(job, task_id)
    assert job.s.undeployed() == {}
    assert job.s.deadline(5, deploy_timeout=30) == started + timedelta(seconds=60)
    assert job.run(Tick(started + timedelta(seconds=31), 5, deploy_timeout=30)) == []
    assert job.s.state is JobState.DEPLOYING


def test_tasks_of_unmanaged_computes_are_not_deploy_timed() -> None:
    job = Job()
    job.run(Start(unmanaged_computes=frozenset({"edge"})))
    started = job.s.started_at
    assert started is not None
    for task_id in (job.aggregator, *job.trainers[:2]):
        _register(job, task_id)
    assert job.s.undeployed() == {}  # the 'edge' agent is started by hand: only maxRunTime
    assert job.s.deadline(5, deploy_timeout=30) == started + timedelta(seconds=60)
