"""Hybrid FL: rings inside groups, FedAvg between them, equal to FedAvg over every trainer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.roles.hybrid import HybridTopAggregator, HybridTrainer
from flame_sdk.simulation import asimulate, run_roles
from flame_sdk.wire import Key, Message
from tests.sdk.helpers import PARAM_CHANNEL, task_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RING_CHANNEL = {
    "name": "ring-channel",
    "pair": ["trainer", "trainer"],
    "groupBy": {"type": "tag", "value": ["eu", "na", "solo"]},
    "funcTags": {"trainer": ["ring_allreduce"]},
}
GROUPS = {"t0": "eu", "t1": "eu", "t2": "na", "t3": "na", "t4": "na", "t5": "solo"}
SIZES = {"t0": 10, "t1": 30, "t2": 5, "t3": 15, "t4": 25, "t5": 40}


def _model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(3), "b": np.zeros(2, dtype=np.float32)}


class StepTrainer(HybridTrainer):
    """Adds its own fixed step to the global model; skips the ring in `skip_round`."""

    skip_round = 0

    def initialize(self) -> None:
        rng = np.random.default_rng(int(self.config.taskid[1:]))
        self.step = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in _model().items()}
        self.model = _model()

    def load_data(self) -> None:
        self.dataset_size = SIZES[self.config.taskid]

    def train(self) -> None:
        for name, step in self.step.items():
            self.model[name] = self.model[name] + step

    def evaluate(self) -> None:
        """Nothing to evaluate."""

    async def ring_allreduce(self) -> None:
        if self.round != self.skip_round:
            await super().ring_allreduce()


class RecordingAggregator(HybridTopAggregator):
    """Records (round, end, carries weights, dataset size) of every update."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.uploads: list[tuple[int, str, bool, int]] = []

    def initialize(self) -> None:
        self.model = _model()

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        if message is not None:
            weights, size = message.get(Key.WEIGHTS), int(message[Key.DATASET_SIZE])
            self.uploads.append((self._round, end, weights is not None, size))
        return await super().fold(aggregation, end, message)


def _roles(rounds: int, **hp: Any) -> tuple[RecordingAggregator, list[StepTrainer]]:
    job = uuid.uuid4().hex
    hyperparameters = {"rounds": rounds, "minEnds": {"aggregator": len(GROUPS)}, **hp}
    agg = RecordingAggregator(
        Config.load(task_config("aggregator", "agg", job, hyperparameters=hyperparameters))
    )
    trainers = [
        StepTrainer(
            Config.load(
                task_config(
                    "trainer",
                    task_id,
                    job,
                    channels=[PARAM_CHANNEL, RING_CHANNEL],
                    groupAssociation={"param-channel": "default", "ring-channel": group},
                    hyperparameters=hyperparameters,
                )
            )
        )
        for task_id, group in GROUPS.items()
    ]
    return agg, trainers


def _fedavg(trainers: list[StepTrainer], rounds: int) -> dict[str, np.ndarray]:
    """Every round adds the size-weighted mean step of all trainers."""
    total = sum(SIZES.values())
    return {
        name: rounds
        * sum(SIZES[t.config.taskid] * t.step[name].astype(np.float64) for t in trainers)
        / total
        for name in ("w", "b")
    }


def _weighted_uploads(agg: RecordingAggregator, round_: int) -> dict[str, int]:
    return {end: size for r, end, has, size in agg.uploads if r == round_ and has}


async def test_group_rings_upload_once_per_group_and_equal_fedavg() -> None:
    agg, trainers = _roles(rounds=3)
    await run_roles([agg, *trainers], timeout=30)
    expected = _fedavg(trainers, 3)
    for name, value in expected.items():
        np.testing.assert_allclose(agg.model[name], value, rtol=1e-5, atol=1e-6)
    # round 1: no group known yet, every trainer uploads its own update
    assert _weighted_uploads(agg, 1) == SIZES
    # then only each ring's committer (its smallest id) uploads, with the group's total
    for round_ in (2, 3):
        assert _weighted_uploads(agg, round_) == {"t0": 40, "t2": 45, "t5": 40}
        others = [(e, s) for r, e, has, s in agg.uploads if r == round_ and not has]
        assert sorted(others) == [("t1", 0), ("t3", 0), ("t4", 0)]
    assert [h["updates"] for h in agg.metrics_history] == [6, 3, 3]
    assert [t.config.taskid for t in trainers if t.committer] == ["t0", "t2"]
    for trainer in trainers:  # EOT carried the final model
        np.testing.assert_array_equal(trainer.model["w"], agg.model["w"])


async def test_failed_ring_falls_back_to_every_member_uploading_its_own_update() -> None:
    agg, trainers = _roles(rounds=3, ringTimeout=0.3)
    trainers[1].skip_round = 2  # t1 never takes part in eu's round-2 ring
    await run_roles([agg, *trainers], timeout=30)
    assert _weighted_uploads(agg, 2) == {"t0": 10, "t1": 30, "t2": 45, "t5": 40}
    assert _weighted_uploads(agg, 3) == {"t0": 40, "t2": 45, "t5": 40}
    for name, value in _fedavg(trainers, 3).items():
        np.testing.assert_allclose(agg.model[name], value, rtol=1e-5, atol=1e-6)


async def test_hybrid_example_gives_the_two_tier_model() -> None:
    flat = await asimulate(EXAMPLES / "two_tier_fedavg", rounds=3, timeout=120)
    hybrid = await asimulate(EXAMPLES / "hybrid", rounds=3, timeout=120)
    (a,) = flat.by_role("aggregator")
    (b,) = hybrid.by_role("aggregator")
    assert [h["updates"] for h in b.metrics_history] == [4, 2, 2]
    assert [h["examples"] for h in b.metrics_history] == [1500] * 3
    wa, wb = a.get_weights(), b.get_weights()
    assert set(wa) == set(wb)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(wa["0.weight"], 0)


@pytest.mark.parametrize("role", ["aggregator", "trainer"])
def test_per_trainer_optimizers_are_refused(role: str) -> None:
    cls = RecordingAggregator if role == "aggregator" else StepTrainer
    extra: dict[str, Any] = {"optimizer": {"sort": "feddyn", "kwargs": {"alpha": 0.1}}}
    if role == "trainer":
        extra |= {
            "channels": [PARAM_CHANNEL, RING_CHANNEL],
            "groupAssociation": {"param-channel": "default", "ring-channel": "eu"},
        }
    with pytest.raises(ConfigError, match="feddyn"):
        cls(Config.load(task_config(role, "x", **extra)))
