"""Coordinated hierarchical sync FL: per-round pairing, exact FedAvg, liveness drops, EOT."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.roles.coordinated import (
    CoordinatedMiddleAggregator,
    CoordinatedTopAggregator,
    CoordinatedTrainer,
)
from flame_sdk.roles.coordinator import Coordinator, Pairing
from flame_sdk.simulation import asimulate, run_roles
from flame_sdk.wire import Message
from tests.sdk.test_processes import _in_process, _run_processes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CHANNELS = json.loads((EXAMPLES / "coordinated" / "schema.json").read_text())["channels"]
# every subset of these sizes sums to at most 8, and 840 = lcm(1..8): each group's weighted
# mean of 840·k deltas is an integer, so the float32 arithmetic below is exact
SIZES = (1, 2, 3, 2)
STEP = 840.0


def _config(role: str, task_id: str, job_id: str, hp: dict[str, Any]) -> Config:
    channels = [c for c in CHANNELS if role in c["pair"]]
    return Config.load(
        {
            "taskid": task_id,
            "backend": "local",
            "role": role,
            "realm": "",
            "job": {"id": job_id, "name": "coordinated"},
            "groupAssociation": {c["name"]: "default" for c in channels},
            "channels": channels,
            "hyperparameters": hp,
        }
    )


class Top(CoordinatedTopAggregator):
    def initialize(self) -> None:
        self.model = {"w": np.zeros(3, dtype=np.float32)}
        self.after_round: dict[int, np.ndarray] = {}

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        self.after_round[self.round] = self.model["w"].copy()


class CrashingTop(Top):
    """Runs round 1, then crashes before answering the coordinator again."""

    async def coordinate(self) -> None:
        if self.after_round:
            await self.cm.backends[0].kill()
            await asyncio.Event().wait()
        await super().coordinate()


class Middle(CoordinatedMiddleAggregator):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.folded: dict[int, list[str]] = {}

    async def fold(self, aggregation: Any, end: str, message: Message | None) -> int | None:
        if message is not None:
            self.folded.setdefault(self.round, []).append(end)
        return await super().fold(aggregation, end, message)


class SilentMiddle(Middle):
    """Answers the coordinator in round 1, then hangs before answering again."""

    async def coordinate(self) -> None:
        if self.folded:
            await asyncio.Event().wait()
        await super().coordinate()


class CrashingMiddle(Middle):
    """Serves round 1, then crashes (no leave message: its peers learn it through liveness)."""

    async def coordinate(self) -> None:
        if self.folded:
            await self.cm.backends[0].kill()
            await asyncio.Event().wait()
        await super().coordinate()


class Leaf(CoordinatedTrainer):
    def __init__(self, *args: Any, k: int) -> None:
        super().__init__(*args)
        self.k = k
        self.trained: dict[int, tuple[str | None, np.ndarray]] = {}

    def initialize(self) -> None:
        self.model = {"w": np.zeros(3, dtype=np.float32)}

    def load_data(self) -> None:
        self.dataset_size = SIZES[self.k - 1]

    def train(self) -> None:
        self.model["w"] = self.model["w"] + STEP * self.k
        self.trained[self.round] = (self._aggregator, self.model["w"].copy())

    def evaluate(self) -> None:
        """Nothing to evaluate."""


def _job(
    middles: int, hp: dict[str, Any], victim: type[Middle] = Middle, top_kind: type[Top] = Top
) -> tuple[Coordinator, Top, list[Middle], list[Leaf]]:
    job = uuid.uuid4().hex
    hp = {"minEnds": {"coordinator": {"middle-aggregator": middles, "trainer": 4}}, **hp}
    coordinator = Coordinator(_config("coordinator", "c", job, hp))
    top = top_kind(_config("top-aggregator", "top", job, hp))
    kinds = [victim, *[Middle] * (middles - 1)]
    mids = [cls(_config("middle-aggregator", f"m{i}", job, hp)) for i, cls in enumerate(kinds)]
    leaves = [Leaf(_config("trainer", f"t{k}", job, hp), k=k) for k in range(1, 5)]
    return coordinator, top, mids, leaves


def _check_rounds(
    coordinator: Coordinator, top: Top, mids: list[Middle], leaves: list[Leaf]
) -> None:
    """Each round: a partition of the trainers over live middle aggregators, each trainer
    uploading to its own, and the top's model the FedAvg of that round's trainer models."""
    by_id = {m.config.taskid: m for m in mids}
    for r, groups in coordinator.assignments.items():
        paired = sorted(t for trainers in groups.values() for t in trainers)
        assert paired == ["t1", "t2", "t3", "t4"], groups
        for mid, trainers in groups.items():
            assert sorted(by_id[mid].folded.get(r, [])) == sorted(trainers), (r, mid)
        for leaf in leaves:
            (mid,) = [m for m, trainers in groups.items() if leaf.config.taskid in trainers]
            assert leaf.trained[r][0] == mid
        total = sum(leaf.dataset_size for leaf in leaves)
        fedavg = sum(leaf.dataset_size * leaf.trained[r][1].astype(np.float64) for leaf in leaves)
        np.testing.assert_array_equal(top.after_round[r], (fedavg / total).astype(np.float32))
    assert sorted(top.after_round) == sorted(coordinator.assignments)


def test_pairing_partitions_the_trainers_and_is_deterministic_under_a_seed() -> None:
    trainers, aggs = [f"t{i}" for i in range(7)], ["a", "b", "c"]
    for how in ("random", "roundrobin"):
        groups = Pairing(how, seed=3)(trainers, aggs)
        assert set(groups) == set(aggs)
        assert sorted(t for ts in groups.values() for t in ts) == trainers
    draws = [Pairing("random", seed=3)(trainers, aggs) for _ in range(2)]
    assert draws[0] == draws[1]
    assert Pairing("random", seed=3)(trainers, []) == {}
    dealer = Pairing("roundrobin")
    assert dealer(trainers[:2], aggs) == {"a": ["t0"], "b": ["t1"], "c": []}
    assert dealer(trainers[:2], aggs) == {"a": ["t1"], "b": [], "c": ["t0"]}  # goes on after b
    with pytest.raises(ConfigError, match="pairing"):
        Coordinator(_config("coordinator", "c", "j", {"rounds": 1, "pairing": "best"}))


async def test_each_round_pairs_every_trainer_and_the_top_holds_their_fedavg() -> None:
    hp = {"rounds": 4, "pairing": "random", "pairingSeed": 2}
    coordinator, top, mids, leaves = _job(3, hp)
    await run_roles([coordinator, top, *mids, *leaves], timeout=30)
    assert sorted(coordinator.assignments) == [1, 2, 3, 4]
    groups = list(coordinator.assignments.values())
    assert any(not ts for g in groups for ts in g.values())  # a middle aggregator sat a round out
    assert any(len(ts) > 1 for g in groups for ts in g.values())
    _check_rounds(coordinator, top, mids, leaves)
    # EOT ended every role; the trainers hold the final model
    for role in (coordinator, top, *mids, *leaves):
        assert role.work_done, role.config.taskid
    for leaf in leaves:
        np.testing.assert_array_equal(leaf.model["w"], top.model["w"])
    assert [h["middle_aggregators"] for h in coordinator.metrics_history] == [3, 3, 3, 3]


@pytest.mark.parametrize(
    ("victim", "liveness"),
    [(SilentMiddle, 0.3), (CrashingMiddle, 30.0)],  # a crash is seen at once (liveness loss)
)
async def test_a_middle_aggregator_that_stops_answering_is_dropped_and_its_trainers_re_paired(
    victim: type[Middle], liveness: float
) -> None:
    hp = {"rounds": 3, "pairing": "roundrobin", "livenessTimeout": liveness}
    coordinator, top, mids, leaves = _job(2, hp, victim)
    dropped, healthy = mids
    tasks = {r: asyncio.create_task(r.arun()) for r in (coordinator, top, *mids, *leaves)}
    try:
        others = [task for role, task in tasks.items() if role is not dropped]
        await asyncio.wait_for(asyncio.gather(*others), 10)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    assignments = coordinator.assignments
    assert assignments[1] == {"m0": ["t1", "t3"], "m1": ["t2", "t4"]}
    for r in (2, 3):
        assert assignments[r] == {"m1": ["t1", "t2", "t3", "t4"]}
    assert list(dropped.folded) == [1] and sorted(healthy.folded) == [1, 2, 3]
    _check_rounds(coordinator, top, mids, leaves)
    for leaf in leaves:
        np.testing.assert_array_equal(leaf.model["w"], top.model["w"])


async def test_a_crashed_top_aggregator_ends_the_job() -> None:
    coordinator, top, mids, leaves = _job(2, {"rounds": 3}, top_kind=CrashingTop)
    tasks = {r: asyncio.create_task(r.arun()) for r in (coordinator, top, *mids, *leaves)}
    try:
        others = [task for role, task in tasks.items() if role is not top]
        await asyncio.wait_for(asyncio.gather(*others), 10)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert sorted(coordinator.assignments) == [1]
    for leaf in leaves:  # EOT without a final model: each keeps its own
        assert sorted(leaf.trained) == [1]
        np.testing.assert_array_equal(leaf.model["w"], leaf.trained[1][1])


async def test_coordinated_digits_equals_hierarchical_fedavg() -> None:
    hier = await asimulate(EXAMPLES / "hierarchical", rounds=3, timeout=120)
    coord = await asimulate(EXAMPLES / "coordinated", rounds=3, timeout=120)
    (a,) = hier.by_role("top-aggregator")
    (b,) = coord.by_role("top-aggregator")
    (coordinator,) = coord.by_role("coordinator")
    assert isinstance(coordinator, Coordinator) and len(coordinator.assignments) == 3
    assert len(coord.by_role("middle-aggregator")) == 2
    wa, wb = a.get_weights(), b.get_weights()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-5, atol=1e-6)
    accuracy = [h["test_accuracy"] for h in b.metrics_history]
    assert accuracy == pytest.approx([h["test_accuracy"] for h in a.metrics_history], abs=0.01)
    for trainer in coord.by_role("trainer"):
        np.testing.assert_array_equal(trainer.get_weights()["2.bias"], wb["2.bias"])


@pytest.mark.integration
@pytest.mark.e2e
async def test_coordinated_example_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes("coordinated", "rabbitmq", rabbit_url, tmp_path, 2)
    in_process = await _in_process("coordinated", "top-aggregator", 2)
    assert accuracies[1:] == pytest.approx(in_process, abs=0.01)
    assert accuracies[-1] > accuracies[0] + 0.2
