"""Flame-style role programs (examples/flame_style) train for real through flame-sim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flame.config import Config
from flame_sdk.simulation import asimulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flame_style"


def _accuracies(role: object) -> list[float]:
    return [h["test-accuracy"] for h in role.metrics_history]  # type: ignore[attr-defined]


async def test_syncfl_trains_and_trainers_get_the_final_model() -> None:
    result = await asimulate(EXAMPLES / "syncfl", rounds=3, timeout=120)
    (agg,) = result.by_role("aggregator")
    trainers = result.by_role("trainer")
    assert isinstance(agg.config, Config)
    assert all(h["updates"] == 4 and h["examples"] == 1500 for h in agg.metrics_history)
    assert len(_accuracies(agg)) == 3 and _accuracies(agg)[-1] >= 0.6, _accuracies(agg)
    final = agg.get_weights()
    for trainer in trainers:
        assert trainer.dataset_size > 0  # set by the user's train()
        np.testing.assert_array_equal(trainer.get_weights()["2.bias"], final["2.bias"])


async def test_hier_syncfl_trains_through_two_middle_aggregators() -> None:
    result = await asimulate(EXAMPLES / "hier_syncfl", rounds=3, timeout=120)
    (top,) = result.by_role("top-aggregator")
    assert len(result.by_role("middle-aggregator")) == 2
    assert all(h["updates"] == 2 and h["examples"] == 1500 for h in top.metrics_history)
    assert _accuracies(top)[-1] >= 0.6, _accuracies(top)


async def test_asyncfl_fedbuff_makes_versions_of_two_updates() -> None:
    result = await asimulate(EXAMPLES / "asyncfl", rounds=8, timeout=120)
    (agg,) = result.by_role("aggregator")
    assert len(agg.metrics_history) == 8
    assert all(h["updates"] == 2 for h in agg.metrics_history)
    accuracies = _accuracies(agg)
    assert accuracies[-1] > accuracies[0] and accuracies[-1] >= 0.4, accuracies


async def test_distributed_ring_allreduce_agrees_on_one_model() -> None:
    result = await asimulate(EXAMPLES / "distributed", rounds=3, timeout=120)
    trainers = result.by_role("trainer")
    assert len(trainers) == 3
    for trainer in trainers:
        assert [h["ring_members"] for h in trainer.metrics_history] == [3, 3, 3]
        assert _accuracies(trainer)[-1] >= 0.5, _accuracies(trainer)
    first = trainers[0].get_weights()
    for other in trainers[1:]:
        for name, value in first.items():
            np.testing.assert_allclose(other.get_weights()[name], value, rtol=1e-6)
