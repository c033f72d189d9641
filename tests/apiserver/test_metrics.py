"""A job's metrics over REST: the rounds its tasks recorded, read from its task.metrics events."""

from __future__ import annotations

from typing import Any

import httpx

from tests.apiserver.conftest import MemoryStack

U = "alice"


def _metrics(seq: int, task_id: str, *records: tuple[int, dict[str, float]]) -> dict[str, Any]:
    return {
        "id": f"e{seq}",
        "type": "task.metrics",
        "job_id": "j1",
        "task_id": task_id,
        "seq": seq,
        "occurred_at": "2026-12-04T06:00:00Z",
        "payload": {"records": [{"round": r, "metrics": m} for r, m in records]},
    }


def _job_with_metrics(stack: MemoryStack) -> None:
    stack.job("j1", U, state="running")
    stack.task("j1", "agg", "aggregator", "k" * 32)
    stack.task("j1", "t1", "trainer", "k" * 32)
    stack.jobs.log_event("j1", 1, _metrics(1, "t1", (1, {"train.runtime": 2.0})))
    stack.jobs.log_event(
        "j1",
        2,
        {
            "id": "e2",
            "type": "task.status_changed",
            "job_id": "j1",
            "task_id": "t1",
            "seq": 2,
            "payload": {"state": "running"},
        },
    )
    stack.jobs.log_event("j1", 3, _metrics(3, "agg", (2, {"test_accuracy": 0.8})))
    stack.jobs.log_event(
        "j1", 4, _metrics(4, "agg", (1, {"test_accuracy": 0.5}), (3, {"test_accuracy": 0.9}))
    )


async def test_rows_by_role_task_and_round(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    _job_with_metrics(stack)
    rows = (await api.get(f"/users/{U}/jobs/j1/metrics")).json()
    assert [(r["role"], r["taskId"], r["round"], r["metrics"]) for r in rows] == [
        ("aggregator", "agg", 1, {"test_accuracy": 0.5}),
        ("aggregator", "agg", 2, {"test_accuracy": 0.8}),
        ("aggregator", "agg", 3, {"test_accuracy": 0.9}),
        ("trainer", "t1", 1, {"train.runtime": 2.0}),
    ]
    assert rows[0]["timestamp"].startswith("2026-12-04T06:00:00")


async def test_filters_by_role_and_task(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    _job_with_metrics(stack)
    by_role = (await api.get(f"/users/{U}/jobs/j1/metrics", params={"role": "trainer"})).json()
    assert [(r["taskId"], r["round"]) for r in by_role] == [("t1", 1)]
    by_task = (await api.get(f"/users/{U}/jobs/j1/metrics", params={"taskId": "agg"})).json()
    assert [r["round"] for r in by_task] == [1, 2, 3]
    none = (await api.get(f"/users/{U}/jobs/j1/metrics", params={"role": "nobody"})).json()
    assert none == []


async def test_unknown_job_or_other_owner_is_404(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    _job_with_metrics(stack)
    assert (await api.get("/users/bob/jobs/j1/metrics")).status_code == 404  # admin, as bob
    assert (await api.get(f"/users/{U}/jobs/nope/metrics")).status_code == 404
