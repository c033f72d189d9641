"""FedGFT: bias statistics and term, the bias round trip, and a smaller parity gap than FedAvg."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.optimizers import create_optimizer
from flame_sdk.optimizers.fedgft import BiasStats, FairnessTerm, FedGFT, GlobalBias, group_stats
from flame_sdk.roles import Role
from flame_sdk.roles.fedgft import FedGFTTopAggregator, FedGFTTrainer
from flame_sdk.simulation import JobOverrides, expand, run_roles
from flame_sdk.simulation.loader import load_role_class

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fedgft"

P = np.array([0.9, 0.8, 0.2, 0.6, 0.4])
Y = np.array([1, 0, 1, 1, 0])
G = np.array([0, 0, 1, 1, 1])


def test_group_statistics_per_fairness_notion() -> None:
    assert np.allclose(group_stats(P, Y, G, "SP"), (1.7, 2, 1.2, 3))
    assert np.allclose(group_stats(P, Y, G, "EOP"), (0.9, 1, 0.8, 2))
    assert np.allclose(group_stats(P, Y, G, "CAL"), (0.9, 1.7, 0.8, 1.2))
    with pytest.raises(ValueError, match="fairness"):
        group_stats(P, Y, G, "XX")
    stats = BiasStats.of(group_stats(P, Y, G, "SP"), len(P))
    assert stats.val == pytest.approx(1.7 / 2 - 1.2 / 3)
    assert BiasStats.of((0.0, 0.0, 1.0, 5.0), 5).b == pytest.approx(1e-8)  # empty group floored


def test_the_server_bias_is_the_weighted_mean_and_the_term_follows_it() -> None:
    one, two = BiasStats(0.4, 0.5, 0.1, 0.5), BiasStats(0.1, 0.2, 0.4, 0.8)
    bias = FedGFT.aggregate_bias([(one, 1), (two, 3)])
    assert bias is not None
    assert (bias.a, bias.b, bias.c, bias.d) == pytest.approx((0.175, 0.275, 0.325, 0.725))
    assert bias.val == pytest.approx(0.175 / 0.275 - 0.325 / 0.725) and bias.sign == 1.0
    assert FedGFT.aggregate_bias([(one, 0)]) is None
    assert GlobalBias.from_wire(bias.wire()) == bias
    for bad in ({**bias.wire(), "b": 0.0}, {**bias.wire(), "a": float("nan")}, {"a": 1}, [1]):
        assert GlobalBias.from_wire(bad) is None
    term = FairnessTerm("SP", 2.0, "l2")
    assert term.batch_term(P, Y, G) == 0.0  # no bias yet
    term.receive_bias(bias)
    res = (1.7 / bias.b - 1.2 / bias.d) / len(P)
    assert term.batch_term(P, Y, G) == pytest.approx(bias.val * 2.0 * res)
    term.reg, term.gamma = "id", "auto"
    assert term.batch_term(P, Y, G) == pytest.approx(1.0 * abs(2 * bias.val) * res)
    term.fair = "CAL"
    a, _, c, _ = group_stats(P, Y, G, "CAL")
    assert term.batch_term(P, Y, G) == pytest.approx(
        -abs(2 * bias.val) * (a / bias.b - c / bias.d) / 5
    )


def _roles(gamma: float, rounds: int) -> list[Role]:
    overrides = JobOverrides(
        job_id=f"sim-{uuid.uuid4().hex[:8]}", hyperparameters={"rounds": rounds}
    )
    roles: list[Role] = []
    for wire in expand(EXAMPLE, overrides):
        optimizer = {"sort": "fedgft", "kwargs": {**wire["optimizer"]["kwargs"], "gamma": gamma}}
        cls = load_role_class(EXAMPLE / wire["role"] / "main.py")
        roles.append(cls(Config.load({**wire, "optimizer": optimizer})))
    return roles


async def _run(gamma: float, rounds: int) -> tuple[FedGFTTopAggregator, list[FedGFTTrainer]]:
    roles = _roles(gamma, rounds)
    await run_roles(roles, timeout=120)
    (top,) = [r for r in roles if isinstance(r, FedGFTTopAggregator)]
    return top, [r for r in roles if isinstance(r, FedGFTTrainer)]


async def test_fedgft_shares_the_bias_and_narrows_the_parity_gap_of_fedavg() -> None:
    """Same seed and data; gamma 0 is FedAvg (the term vanishes), the example's gamma is 5."""
    fedavg, _ = await _run(0.0, 5)
    fair, trainers = await _run(5.0, 5)
    for top in (fedavg, fair):
        assert len(top.metrics_history) == 5 and all("bias" in h for h in top.metrics_history)
    reports = [(t._stats, t.dataset_size) for t in trainers]
    expected = FedGFT.aggregate_bias(reports)  # type: ignore[arg-type]
    assert fair.bias is not None and expected is not None
    assert fair.bias.wire() == pytest.approx(expected.wire())  # summed in arrival order
    assert all(t.fairness.bias == fair.bias for t in trainers)
    last: dict[str, Any] = fair.metrics_history[-1]
    baseline: dict[str, Any] = fedavg.metrics_history[-1]
    assert baseline["test_accuracy"] >= 0.85 and last["test_accuracy"] >= 0.8, (baseline, last)
    assert last["test_sp_gap"] < 0.75 * baseline["test_sp_gap"], (baseline, last)
    assert last["bias"] < baseline["bias"]


def test_fedgft_roles_need_the_fedgft_optimizer() -> None:
    wire = next(w for w in expand(EXAMPLE) if w["role"] == "trainer")
    config = Config.load({**wire, "optimizer": {"sort": "fedavg", "kwargs": {}}})
    with pytest.raises(ConfigError, match="fedgft"):
        load_role_class(EXAMPLE / "trainer" / "main.py")(config)
    with pytest.raises(ValueError, match="gamma"):
        create_optimizer("fedgft", {"fair": "SP", "gamma": -1})
