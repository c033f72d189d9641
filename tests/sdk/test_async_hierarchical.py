"""3-tier asynchronous FL (FedBuff) in one process: it converges, sizes add up, EOT reaches all."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from flame_sdk.config import Config
from flame_sdk.roles import AsyncMiddleAggregator, Role
from flame_sdk.simulation import JobOverrides, SimulationResult, asimulate, expand, run_roles
from flame_sdk.simulation.loader import load_role_class

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "async_hierarchical"


def _region(role: Role) -> str:
    return (role.config.group_association or {})["param-channel"]


def _assert_everyone_has_the_final_model(result: SimulationResult) -> None:
    (top,) = result.by_role("top-aggregator")
    final = top.get_weights()
    assert not np.allclose(final["0.weight"], 0)
    below = result.by_role("middle-aggregator") + result.by_role("trainer")
    assert len(below) == 6
    for role in below:
        assert role.weights is not None, role.config.role
        for name, value in final.items():
            np.testing.assert_array_equal(role.weights[name], value)


async def test_three_tier_fedbuff_converges_like_two_tier() -> None:
    # 2-tier FedBuff (examples/async_fedbuff) ends near 0.90 after 20 versions; 3-tier near 0.88.
    result = await asimulate(EXAMPLE, rounds=20, timeout=300)
    (top,) = result.by_role("top-aggregator")
    accuracies = [h["test_accuracy"] for h in top.metrics_history]
    assert len(accuracies) == 20
    assert all(h["updates"] == 2 for h in top.metrics_history)
    assert accuracies[0] < 0.5 and accuracies[-1] >= 0.8, accuracies
    for middle in result.by_role("middle-aggregator"):
        assert isinstance(middle, AsyncMiddleAggregator)
        assert middle.metrics_history and all(h["updates"] == 1 for h in middle.metrics_history)
    _assert_everyone_has_the_final_model(result)


async def test_upload_size_is_the_sum_of_the_buffered_updates() -> None:
    goals = {"top-aggregator": 2, "middle-aggregator": 2}
    roles = _build({"rounds": 3, "aggGoal": goals})
    (top,) = [r for r in roles if r.config.role == "top-aggregator"]
    received: list[tuple[str, int | None]] = []
    fold = top.fold  # type: ignore[attr-defined]

    async def recording_fold(aggregation: Any, end: str, message: Any) -> int | None:
        size = await fold(aggregation, end, message)
        received.append((end, size))
        return size

    top.fold = recording_fold  # type: ignore[attr-defined]
    await run_roles(roles, timeout=120)
    result = SimulationResult(roles)
    trainers = result.by_role("trainer")
    expected = {}
    for middle in result.by_role("middle-aggregator"):
        sizes = [t.dataset_size for t in trainers if _region(t) == _region(middle)]  # type: ignore[attr-defined]
        assert len(sizes) == 2 and min(sizes) > 0
        expected[middle.config.taskid] = sum(sizes)
        assert all(h["updates"] == 2 for h in middle.metrics_history)
    assert len(received) == 6
    assert all(size == expected[end] for end, size in received), (received, expected)
    _assert_everyone_has_the_final_model(result)


def _build(hyperparameters: dict[str, Any], stuck_region: str = "") -> list[Role]:
    """The example's roles; the middle aggregator of `stuck_region` needs 10,000 updates."""
    overrides = JobOverrides(job_id=f"sim-{uuid.uuid4().hex[:8]}", hyperparameters=hyperparameters)
    roles: list[Role] = []
    for wire in expand(EXAMPLE, overrides):
        config: dict[str, Any] = wire
        if wire["role"] == "middle-aggregator" and (
            wire["groupAssociation"]["param-channel"] == stuck_region
        ):
            config = {**wire, "hyperparameters": {**wire["hyperparameters"], "aggGoal": 10_000}}
        cls = load_role_class(EXAMPLE / wire["role"] / "main.py")
        roles.append(cls(Config.load(config)))
    return roles


async def test_eot_ends_a_buffer_that_can_never_fill() -> None:
    """One region needs more updates than its trainers ever send; EOT still ends it at once."""
    goals = {"top-aggregator": 1, "middle-aggregator": 1}
    roles = _build({"rounds": 3, "aggGoal": goals}, stuck_region="na")
    await run_roles(roles, timeout=120)
    result = SimulationResult(roles)
    stuck = next(r for r in result.by_role("middle-aggregator") if _region(r) == "na")
    assert stuck.metrics_history == []  # it never uploaded, yet it finished
    (top,) = result.by_role("top-aggregator")
    assert [h["updates"] for h in top.metrics_history] == [1, 1, 1]
    _assert_everyone_has_the_final_model(result)
