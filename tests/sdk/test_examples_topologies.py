"""Flame's topology and dataset examples on offline data: tables, fairness, hierarchies."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.datasets import (
    COMPAS_GROUP_COLUMN,
    TABLE_TEST_ROWS,
    TABLE_TRAIN_ROWS,
    DatasetError,
    adult_table,
    compas_table,
    load_dataset,
)
from flame_sdk.roles import Role
from flame_sdk.roles.fedgft import FedGFTTopAggregator
from flame_sdk.roles.lifl import LiflCoordinator
from flame_sdk.simulation import JobOverrides, SimulationResult, asimulate, expand, run_roles
from flame_sdk.simulation.loader import load_role_class
from flame_sdk.weights import Weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _build(example: str, hp: dict[str, Any], optimizer: dict[str, Any] | None = None) -> list[Role]:
    """The roles of an example's job (with `optimizer` kwargs merged over the modelSpec's)."""
    overrides = JobOverrides(job_id=f"sim-{uuid.uuid4().hex[:8]}", hyperparameters=hp)
    roles: list[Role] = []
    for wire in expand(EXAMPLES / example, overrides):
        if optimizer is not None:
            kwargs = {**wire["optimizer"]["kwargs"], **optimizer}
            wire = {**wire, "optimizer": {**wire["optimizer"], "kwargs": kwargs}}
        cls = load_role_class(EXAMPLES / example / wire["role"] / "main.py")
        roles.append(cls(Config.load(wire)))
    return roles


def _majority(url: str) -> float:
    """The accuracy of always predicting the majority class of a binary test set."""
    y = load_dataset(url).y
    return float(max(y.mean(), 1 - y.mean()))


def _assert_final_model(result: SimulationResult, top: str, *roles: str) -> None:
    (agg,) = result.by_role(top)
    final = agg.get_weights()
    for role in (r for name in roles for r in result.by_role(name)):
        assert role.work_done and role.weights is not None, role.config.taskid
        for name in final:
            np.testing.assert_array_equal(role.weights[name], final[name])


# the synthetic tables -----------------------------------------------------------------------------
def test_tabular_urls_are_deterministic_shards_of_adult_and_compas_shaped_tables() -> None:
    for table, columns in ((adult_table, 18), (compas_table, 6)):
        x, y = table()
        again_x, again_y = table.__wrapped__()  # drawn afresh: the same numbers
        np.testing.assert_array_equal(x, again_x)
        np.testing.assert_array_equal(y, again_y)
        assert x.shape == (TABLE_TRAIN_ROWS + TABLE_TEST_ROWS, columns) and x.dtype == np.float32
        assert set(np.unique(y)) == {0, 1} and y.dtype == np.int64
    adult_x, adult_y = adult_table()
    assert 0.2 < adult_y.mean() < 0.3  # Adult's income > 50K is a minority class
    for block in (adult_x[:, 4:8], adult_x[:, 8:11], adult_x[:, 11:16], adult_x[:, 16:18]):
        np.testing.assert_array_equal(block.sum(1), 1)  # one-hot categorical features
    shards = [load_dataset(f"compas://{i}/4") for i in range(4)]
    assert [len(s) for s in shards] == [500] * 4 and [s.shard for s in shards] == [0, 1, 2, 3]
    test = load_dataset("compas://test")
    assert len(test) == TABLE_TEST_ROWS
    group = test.x[:, COMPAS_GROUP_COLUMN]
    assert set(np.unique(group)) == {0.0, 1.0}
    assert test.y[group == 1].mean() - test.y[group == 0].mean() > 0.2  # base rates differ
    with pytest.raises(DatasetError, match="shard 4 of 4"):
        load_dataset("adult://4/4")
    with pytest.raises(DatasetError, match="adult://"):
        load_dataset("census://0/4")


def test_tabular_roles_need_a_test_dataset_and_a_group_column() -> None:
    (agg,) = [r for r in _build("adult", {"testDataset": None}) if r.config.role == "aggregator"]
    with pytest.raises(ConfigError, match="testDataset"):
        agg.load_data()
    trainer = next(
        r for r in _build("compas_fedgft", {"groupColumn": 6}) if r.config.role == "trainer"
    )
    with pytest.raises(ConfigError, match="groupColumn 6"):
        trainer.load_data()
    trainer = next(
        r for r in _build("compas_fedgft", {"groupColumn": 2}) if r.config.role == "trainer"
    )
    with pytest.raises(ValueError, match="not a 0/1 group"):  # column 2 is the age
        trainer.load_data()


# 1. adult: syncfl on tabular data, random selector k=1 --------------------------------------------
async def test_adult_trains_one_random_trainer_per_round_above_the_majority_class() -> None:
    result = await asimulate(EXAMPLES / "adult", rounds=6, timeout=60)
    (agg,) = result.by_role("aggregator")
    assert [h["updates"] for h in agg.metrics_history] == [1] * 6  # k=1
    trained = {
        t.config.taskid: [h["round"] for h in t.metrics_history] for t in result.by_role("trainer")
    }
    assert sorted(r for rounds in trained.values() for r in rounds) == list(range(1, 7))
    assert sum(1 for rounds in trained.values() if rounds) >= 2  # the draw changes per round
    accuracy = agg.metrics_history[-1]["test_accuracy"]
    assert accuracy >= _majority("adult://test") + 0.05, agg.metrics_history
    _assert_final_model(result, "aggregator", "trainer")


# 2. compas_fedgft: FedGFT on COMPAS-shaped data ---------------------------------------------------
async def _fedgft(gamma: float, rounds: int) -> FedGFTTopAggregator:
    roles = _build("compas_fedgft", {"rounds": rounds}, {"gamma": gamma})
    await run_roles(roles, timeout=60)
    (top,) = [r for r in roles if isinstance(r, FedGFTTopAggregator)]
    return top


async def test_compas_fedgft_narrows_the_parity_gap_of_fedavg() -> None:
    """Same seed and data; gamma 0 is FedAvg (the term vanishes), the example's gamma is 5."""
    fedavg = (await _fedgft(0.0, 4)).metrics_history[-1]
    fair = (await _fedgft(5.0, 4)).metrics_history[-1]
    assert fedavg["test_sp_gap"] > 0.35, fedavg  # an accurate model follows the base rates
    assert fair["test_sp_gap"] < 0.6 * fedavg["test_sp_gap"], (fedavg, fair)
    assert fair["bias"] < fedavg["bias"]
    majority = _majority("compas://test")
    assert fedavg["test_accuracy"] >= majority + 0.1 and fair["test_accuracy"] >= majority + 0.08


# 3. eager_hier_mnist -> hierarchical: every aggregator folds each update as it arrives ------------
class EagernessProbe:
    """Hooks on the roles of `hierarchical`: the order of uploads and folds (`events`: (kind,
    role id, round, end folded)); for each aggregated array the largest difference between an
    aggregator's result and the batch FedAvg of the updates it folded (`gaps`). The second
    update of a round to an aggregator is held until the first was folded there, so a
    aggregator that waited for all its updates before folding shows up in `late`."""

    def __init__(self, roles: list[Role]) -> None:
        self.events: list[tuple[str, str, int, str]] = []
        self.gaps: list[float] = []
        self.late: list[tuple[str, int]] = []
        self._folded: dict[tuple[str, int], asyncio.Event] = {}
        self._sent: dict[tuple[str, int], int] = {}
        (top,) = [r.config.taskid for r in roles if r.config.role == "top-aggregator"]
        middles = {_param_group(r): r.config.taskid for r in roles if r.config.role != "trainer"}
        for role in roles:
            if role.config.role == "trainer":
                self._hold_upload(role, middles[_param_group(role)])
            elif role.config.role == "middle-aggregator":
                self._hold_upload(role, top)
            if role.config.role != "trainer":
                self._check_aggregation(role)

    def _event(self, key: tuple[str, int]) -> asyncio.Event:
        return self._folded.setdefault(key, asyncio.Event())

    def _hold_upload(self, role: Role, parent: str) -> None:
        upload = role.upload  # type: ignore[attr-defined]

        async def held_upload() -> None:
            key = (parent, role.round)
            self._sent[key] = self._sent.get(key, 0) + 1
            if self._sent[key] > 1:  # an earlier update of the round is on its way
                try:
                    await asyncio.wait_for(self._event(key).wait(), 5)
                except TimeoutError:
                    self.late.append(key)
            self.events.append(("upload", role.config.taskid, role.round, ""))
            await upload()

        role.upload = held_upload  # type: ignore[attr-defined]

    def _check_aggregation(self, role: Role) -> None:
        fold, collect = role.fold, role.collect  # type: ignore[attr-defined]
        folded: list[tuple[Weights, int]] = []

        async def recording_fold(aggregation: Any, end: str, msg: Any) -> Any:
            if msg is not None and msg.get("weights") is not None:
                delta = {k: np.array(v) for k, v in msg["weights"].items()}
                folded.append((delta, msg["dataset_size"]))
                self.events.append(("fold", role.config.taskid, role.round, end))
            size = await fold(aggregation, end, msg)
            self._event((role.config.taskid, role.round)).set()
            return size

        async def checked_collect(ends: list[str], base: Weights) -> Any:
            folded.clear()
            before = {k: np.array(v, dtype=np.float64) for k, v in base.items()}
            result = await collect(ends, base)
            total = sum(n for _, n in folded)
            for name, value in before.items():
                batch = value + sum(n * d[name] for d, n in folded) / total
                self.gaps.append(float(np.abs(result[0][name] - batch).max()))
            return result

        role.fold, role.collect = recording_fold, checked_collect  # type: ignore[attr-defined]


def _param_group(role: Role) -> str:
    return (role.config.group_association or {}).get("param-channel", "")


async def test_hierarchical_aggregators_fold_eagerly_and_exactly() -> None:
    """Flame's eager_hier_mnist (top, middle aggregators uk/us, 4 trainers) is `hierarchical`:
    every aggregator adds each update into `Σ n_i·Δ_i` as it arrives and divides once."""
    roles = _build("hierarchical", {"rounds": 2})
    probe = EagernessProbe(roles)
    await run_roles(roles, timeout=60, fold_in_end_order=False)  # as they arrive, as deployed
    result = SimulationResult(roles)
    assert probe.late == []
    assert len(probe.gaps) == 2 * 3 * 4 and max(probe.gaps) < 1e-5  # 3 aggregators, 4 arrays
    events = probe.events
    for agg in result.by_role("top-aggregator") + result.by_role("middle-aggregator"):
        for round_ in (1, 2):
            folds = [
                (i, e[3])
                for i, e in enumerate(events)
                if e[:3] == ("fold", agg.config.taskid, round_)
            ]
            ends = {end for _, end in folds}
            uploads = [
                i
                for i, e in enumerate(events)
                if e[0] == "upload" and e[1] in ends and e[2] == round_
            ]
            assert len(folds) == len(uploads) == len(ends) == 2, (agg.config.role, round_)
            assert folds[0][0] < uploads[-1], (agg.config.role, round_)  # before the last came
    (top,) = result.by_role("top-aggregator")
    assert top.metrics_history[-1]["test_accuracy"] > 0.5
    _assert_final_model(result, "top-aggregator", "middle-aggregator", "trainer")


def _ids(result: SimulationResult, role: str) -> set[str]:
    return {r.config.taskid for r in result.by_role(role)}


# 4. coord_3_hier_syncfl_mnist -> coord_3_hierarchical: LIFL's 3 levels with 2 trainers ------------
async def test_coord_3_hierarchical_aggregates_at_every_level() -> None:
    result = await asimulate(EXAMPLES / "coord_3_hierarchical", rounds=3, timeout=60)
    (coordinator,) = result.by_role("coordinator")
    assert isinstance(coordinator, LiflCoordinator)
    leaves, middles = _ids(result, "leaf-aggregator"), _ids(result, "middle-aggregator")
    trainers = _ids(result, "trainer")
    for r in (1, 2, 3):  # round-robin: one trainer per leaf, one leaf per middle aggregator
        by_leaf, by_middle = coordinator.leaf_assignments[r], coordinator.assignments[r]
        assert set(by_leaf) == leaves and sorted(map(len, by_leaf.values())) == [1, 1]
        assert {t for ts in by_leaf.values() for t in ts} == trainers
        assert set(by_middle) == middles and {x for ls in by_middle.values() for x in ls} == leaves
    for name, updates in (("leaf-aggregator", 1), ("middle-aggregator", 1), ("top-aggregator", 2)):
        for agg in result.by_role(name):
            assert [h["updates"] for h in agg.metrics_history] == [updates] * 3, name
    (top,) = result.by_role("top-aggregator")
    assert [h["examples"] for h in top.metrics_history] == [1500] * 3
    assert top.metrics_history[-1]["test_accuracy"] > 0.8
    _assert_final_model(result, "top-aggregator", "leaf-aggregator", "trainer")


# 5. coord_hier_asyncfl_mnist -> coord_async with Flame's aggGoal 1 and 10 versions ----------------
async def test_coord_async_with_flames_aggregation_goal_of_one() -> None:
    result = await asimulate(
        EXAMPLES / "coord_async", rounds=10, hyperparameters={"aggGoal": 1}, timeout=60
    )
    (top,) = result.by_role("top-aggregator")
    assert [h["updates"] for h in top.metrics_history] == [1] * 10  # a version per update
    for middle in result.by_role("middle-aggregator"):  # both buffered, one trainer at a time
        assert middle.metrics_history and all(h["updates"] == 1 for h in middle.metrics_history)
    accuracy = [h["test_accuracy"] for h in top.metrics_history]
    assert accuracy[-1] > max(0.4, accuracy[0] + 0.2), accuracy
    _assert_final_model(result, "top-aggregator", "middle-aggregator", "trainer")


# 6. fedscale: each round every trainer reloads a freshly drawn partition --------------------------
async def test_fedscale_redraws_the_partitions_every_round() -> None:
    result = await asimulate(EXAMPLES / "fedscale", rounds=4, timeout=60)
    trainers = result.by_role("trainer")
    drawn = np.array([[h["partition"] for h in t.metrics_history] for t in trainers])
    assert drawn.shape == (4, 4)
    for column in drawn.T:  # disjoint within a round
        assert len(set(column)) == 4
    for row in drawn:  # each trainer's partition changes over the rounds
        assert len(set(row)) >= 2, drawn
    (agg,) = result.by_role("aggregator")
    assert all(4 * 187 <= h["examples"] <= 4 * 188 for h in agg.metrics_history)  # 4 of 8
    assert agg.metrics_history[-1]["test_accuracy"] > 0.6  # chance is 0.1
    chain = trainers[0].composer.chain()
    assert chain[chain.index("redraw") + 1] == "train"
