"""FedDyn, SCAFFOLD and Oort through the roles: coefficients, server state, extras, end props."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from flame_sdk.config import Config, ConfigError
from flame_sdk.optimizers import (
    CONTROL,
    DynTerm,
    Regularizer,
    ScaffoldTerm,
    create_optimizer,
)
from flame_sdk.optimizers.feddyn import FedDyn
from flame_sdk.roles import (
    AsyncMiddleAggregator,
    AsyncTopAggregator,
    MiddleAggregator,
    TopAggregator,
    Trainer,
)
from flame_sdk.selectors import ROUND_DURATION, STAT_UTILITY
from flame_sdk.simulation import JobOverrides, expand, run_roles
from flame_sdk.weights import Weights
from flame_sdk.wire import Message
from tests.sdk.helpers import task_config

SIZES = {"t1": 10, "t2": 30, "t3": 60}
TARGETS = {"t1": [1.0, -2.0], "t2": [3.0, 0.5], "t3": [-1.0, 4.0]}
HIERARCHICAL = Path(__file__).resolve().parents[2] / "examples" / "hierarchical"


def _model() -> Weights:
    return {"w": np.zeros(2), "steps": np.array(0, dtype=np.int64)}


def _coefficient(regularizer: Regularizer) -> float | None:
    if isinstance(regularizer, ScaffoldTerm):
        return regularizer.weight
    return regularizer.alpha if isinstance(regularizer, DynTerm) else None


class QuadraticTrainer(Trainer):
    """Loss ½‖w - target‖²: `k` gradient steps at `learning_rate`, with the client term."""

    k = 3

    def initialize(self) -> None:
        self.model = _model()
        self.seen: list[tuple[int, float | None, np.ndarray | None]] = []  # round, coefficient, c
        self.controls: list[np.ndarray] = []  # c_i after each upload (SCAFFOLD)

    def load_data(self) -> None:
        self.dataset_size = SIZES[self.config.taskid]
        self.target = np.array(TARGETS[self.config.taskid])
        self.learning_rate = 0.1

    def train(self) -> None:
        assert self.weights is not None
        control = getattr(self.regularizer, "control", {}).get("w")
        self.seen.append((self.round, _coefficient(self.regularizer), control))
        w = self.model["w"]
        for _ in range(self.k):
            grad = w - self.target + self.regularizer.gradient({"w": w}, self.weights)["w"]
            w = w - self.learning_rate * grad
        self.model["w"] = w
        self.model["steps"] = self.model["steps"] + 1

    def evaluate(self) -> None:
        """Nothing to evaluate."""

    async def upload(self) -> None:
        await super().upload()
        if isinstance(self.regularizer, ScaffoldTerm):
            self.controls.append(self.regularizer.local["w"].copy())


class NoControlTrainer(QuadraticTrainer):
    """Uploads plain deltas, without the control extras SCAFFOLD requires."""

    async def internal_init(self) -> None:
        await super().internal_init()
        self.regularizer = Regularizer()

    def load_data(self) -> None:
        self.dataset_size = 50

    def train(self) -> None:
        self.model["w"] = self.model["w"] + 1.0


class RecordingAggregator(TopAggregator):
    """Records every folded update and, after each round, the server state and end properties."""

    def initialize(self) -> None:
        self.model = _model()
        self.folded: list[tuple[int, str, Weights, int]] = []
        self.states: list[dict[str, Weights]] = []
        self.end_props: list[dict[str, dict[str, Any]]] = []

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        size = await super().fold(aggregation, end, message)
        if size is not None and message is not None:
            self.folded.append((self.round, end, copy.deepcopy(message["weights"]), size))
        return size

    async def aggregate(self) -> None:
        await super().aggregate()
        self.states.append(copy.deepcopy(self.optimizer.server_state()))
        channel = self.cm.get_by_tag("distribute")
        self.end_props.append(
            {
                end: {
                    key: channel.get_end_property(end, key)
                    for key in (STAT_UTILITY, ROUND_DURATION)
                    if channel.get_end_property(end, key) is not None
                }
                for end in self._ends
            }
        )


async def _run(
    optimizer: dict[str, Any],
    rounds: int,
    rogue: bool = False,
    selector: dict[str, Any] | None = None,
    trainer_class: type[QuadraticTrainer] = QuadraticTrainer,
) -> tuple[RecordingAggregator, list[QuadraticTrainer], list[dict[str, Any]]]:
    job = uuid.uuid4().hex
    hp = {"rounds": rounds, "minEnds": len(SIZES) + rogue}
    common = {"hyperparameters": hp, "optimizer": optimizer}
    with capture_logs() as logs:
        agg = RecordingAggregator(
            Config.load(task_config("aggregator", "agg", job, selector=selector or {}, **common))
        )
        trainers = [
            trainer_class(Config.load(task_config("trainer", end, job, **common))) for end in SIZES
        ]
        extra: list[Trainer] = []
        if rogue:
            config = Config.load(task_config("trainer", "rogue", job, **common))
            extra.append(NoControlTrainer(config))
        await run_roles([agg, *trainers, *extra], timeout=60)
    return agg, trainers, logs


def _weighted_mean(values: dict[str, np.ndarray]) -> np.ndarray:
    total = sum(SIZES.values())
    return sum((SIZES[end] / total * value for end, value in values.items()), np.zeros(2))


async def test_scaffold_c_is_data_weighted_and_updates_without_control_are_rejected() -> None:
    agg, trainers, logs = await _run({"sort": "scaffold", "kwargs": {"k": 3}}, 3, rogue=True)
    assert [h["updates"] for h in agg.metrics_history] == [3, 3, 3]
    rejected = [x for x in logs if x["event"] == "update rejected"]
    assert [x["end"] for x in rejected] == ["rogue"] * 3
    assert all(x["log_level"] == "warning" and "control" in x["reason"] for x in rejected)

    total, population = sum(SIZES.values()), len(SIZES)
    for trainer in trainers:  # omega_i = (n_i/N)·M from round 2 on, neutral 1 in round 1
        omega = SIZES[trainer.config.taskid] / total * population
        assert [(r, c) for r, c, _ in trainer.seen] == [
            (1, 1.0),
            (2, pytest.approx(omega)),
            (3, pytest.approx(omega)),
        ]
        assert trainer.seen[0][2] is None  # no control before the first round
        for (_, _, got), state in zip(trainer.seen[1:], agg.states[:2], strict=True):
            np.testing.assert_array_equal(got, state[CONTROL]["w"])  # c of the last round

    by_round = [{t.config.taskid: t.controls[r] for t in trainers} for r in range(3)]
    plain_mean = sum(by_round[0].values()) / population
    np.testing.assert_allclose(agg.states[0][CONTROL]["w"], plain_mean, rtol=1e-12)
    assert not np.allclose(plain_mean, _weighted_mean(by_round[0]))  # round 1 weighs all alike
    for r in (1, 2):
        np.testing.assert_allclose(
            agg.states[r][CONTROL]["w"], _weighted_mean(by_round[r]), rtol=1e-12, atol=1e-12
        )


async def test_feddyn_trainers_get_alpha_i_and_the_aggregator_runs_feddyn() -> None:
    alpha = 0.5
    agg, trainers, _ = await _run({"sort": "feddyn", "kwargs": {"alpha": alpha}}, 3)
    total, population = sum(SIZES.values()), len(SIZES)
    for trainer in trainers:
        alpha_i = alpha / (SIZES[trainer.config.taskid] / total * population)
        assert [(r, c) for r, c, _ in trainer.seen] == [
            (1, alpha),
            (2, pytest.approx(alpha_i)),
            (3, pytest.approx(alpha_i)),
        ]
        # after_training saw the local weights before the delta was taken in place: g = Σ Δ_i
        uploaded = [d["w"] for _, end, d, _ in agg.folded if end == trainer.config.taskid]
        assert len(uploaded) == 3
        np.testing.assert_allclose(trainer.regularizer.history["w"], sum(uploaded), rtol=1e-12)

    replay = create_optimizer("feddyn", {"alpha": alpha})
    assert isinstance(replay, FedDyn)
    weights, sizes = _model(), dict[str, int]()
    for r in (1, 2, 3):
        if sizes:
            replay.client_coefficients(sizes)
        aggregation = replay.begin(weights, r)
        for _, end, delta, size in (f for f in agg.folded if f[0] == r):
            aggregation.add(delta, size, r)
            sizes[end] = size
        result = aggregation.result()
        assert result is not None
        weights = result
    assert replay.population == population
    final = agg.get_weights()
    np.testing.assert_allclose(final["w"], weights["w"], rtol=1e-12)
    assert final["steps"] == weights["steps"] == 3


class UtilityTrainer(QuadraticTrainer):
    """t1 and t2 report a statistical utility; t3 does not."""

    def train(self) -> None:
        super().train()
        if self.config.taskid != "t3":
            self.stat_utility = float(SIZES[self.config.taskid])


async def test_oort_end_properties_come_from_the_trainers_updates() -> None:
    selector = {"sort": "oort", "kwargs": {"aggr_num": 3, "seed": 0}}
    agg, _, _ = await _run({"sort": "fedavg"}, 2, selector=selector, trainer_class=UtilityTrainer)
    assert len(agg.end_props) == 2
    for props in agg.end_props:
        assert set(props) == set(SIZES)
        for end, got in props.items():
            assert isinstance(got[ROUND_DURATION], float) and got[ROUND_DURATION] > 0
            assert got.get(STAT_UTILITY) == (None if end == "t3" else float(SIZES[end]))


def _hierarchical_config(role: str, optimizer: dict[str, Any]) -> Config:
    overrides = JobOverrides(job_id=f"sim-{uuid.uuid4().hex[:8]}")
    config = next(c for c in expand(HIERARCHICAL, overrides) if c["role"] == role)
    return Config.load({**config, "optimizer": optimizer})


class Region(MiddleAggregator):
    """A plain middle aggregator."""


class AsyncRegion(AsyncMiddleAggregator):
    """A plain async middle aggregator."""


class AsyncTop(AsyncTopAggregator):
    def initialize(self) -> None:
        self.model = _model()

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""


@pytest.mark.parametrize("sort", ["scaffold", "feddyn"])
def test_middle_and_async_aggregators_refuse_per_client_optimizers(sort: str) -> None:
    optimizer = {"sort": sort, "kwargs": {"k": 2} if sort == "scaffold" else {"alpha": 0.1}}
    with pytest.raises(ConfigError, match=f"'{sort}' needs a two-tier topology"):
        Region(_hierarchical_config("middle-aggregator", optimizer))
    with pytest.raises(ConfigError, match="an async middle aggregator"):
        AsyncRegion(_hierarchical_config("middle-aggregator", optimizer))
    config = task_config("aggregator", "agg", optimizer=optimizer)
    with pytest.raises(ConfigError, match="an async aggregator"):
        AsyncTop(Config.load(config))


def test_middle_aggregator_accepts_optimizers_without_a_client_protocol() -> None:
    config = _hierarchical_config("middle-aggregator", {"sort": "fedprox", "kwargs": {"mu": 1.0}})
    Region(config)  # no error: FedProx has no per-client protocol


async def test_scaffold_trainer_without_learning_rate_fails_clearly() -> None:
    trainer = QuadraticTrainer(Config.load(task_config("trainer", "t1")))
    trainer.regularizer = create_optimizer("scaffold", {"k": 1}).regularizer
    trainer.initialize()
    trainer.weights = _model()
    with pytest.raises(RuntimeError, match=r"self\.learning_rate"):
        await trainer.upload()
