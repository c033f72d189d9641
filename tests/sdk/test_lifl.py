"""LIFL 3-level coordinated sync FL: round-robin pairing of every level, exact FedAvg, EOT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flame_sdk.roles.lifl import CoordinatedLeafAggregator, LiflCoordinator
from flame_sdk.simulation import asimulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_lifl_digits_equals_hierarchical_fedavg() -> None:
    hier = await asimulate(EXAMPLES / "hierarchical", rounds=3, timeout=120)
    lifl = await asimulate(EXAMPLES / "lifl", rounds=3, timeout=120)
    (coordinator,) = lifl.by_role("coordinator")
    assert isinstance(coordinator, LiflCoordinator)
    leaves = sorted(r.config.taskid for r in lifl.by_role("leaf-aggregator"))
    middles = sorted(r.config.taskid for r in lifl.by_role("middle-aggregator"))
    trainers = sorted(r.config.taskid for r in lifl.by_role("trainer"))
    assert sorted(coordinator.assignments) == [1, 2, 3]
    for r in (1, 2, 3):  # round-robin: two trainers per leaf, one leaf per middle aggregator
        by_leaf = coordinator.leaf_assignments[r]
        assert sorted(by_leaf) == leaves and [len(t) for t in by_leaf.values()] == [2, 2]
        assert sorted(t for ts in by_leaf.values() for t in ts) == trainers
        by_middle = coordinator.assignments[r]
        assert sorted(by_middle) == middles and [len(ls) for ls in by_middle.values()] == [1, 1]
    for leaf in lifl.by_role("leaf-aggregator"):
        assert isinstance(leaf, CoordinatedLeafAggregator)
        assert [h["updates"] for h in leaf.metrics_history] == [2, 2, 2]
    (a,) = hier.by_role("top-aggregator")
    (b,) = lifl.by_role("top-aggregator")
    wa, wb = a.get_weights(), b.get_weights()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-5, atol=1e-6)
    accuracy = [h["test_accuracy"] for h in b.metrics_history]
    assert accuracy == pytest.approx([h["test_accuracy"] for h in a.metrics_history], abs=0.01)
    assert accuracy[-1] > 0.7
    for role in lifl.by_role("trainer") + lifl.by_role("leaf-aggregator"):
        assert role.work_done and role.weights is not None
        np.testing.assert_array_equal(role.weights["2.bias"], wb["2.bias"])
