"""The algorithm examples train for real, and their trainers run each algorithm's client side."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.optimizers import CONTROL, DynTerm, Regularizer, ScaffoldTerm
from flame_sdk.simulation import SimulationResult, asimulate, expand
from flame_sdk.simulation.loader import load_role_class
from flame_sdk.weights import Weights
from flame_sdk.workloads.digits import build_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 120


def _variant(tmp_path: Path, example: str, **plugins: dict[str, Any]) -> Path:
    """A copy of the example whose modelSpec has these plugin entries (`optimizer`, `privacy`,
    ...) replaced: the override of a sort or its kwargs, which hyperparameters cannot make."""
    folder = tmp_path / example
    shutil.copytree(EXAMPLES / example, folder)
    spec_path = folder / "modelSpec.json"
    spec = json.loads(spec_path.read_text())
    spec.update(plugins)
    spec_path.write_text(json.dumps(spec))
    return folder


def _aggregator(result: SimulationResult) -> Any:
    (agg,) = result.by_role("aggregator")
    return agg


def _history(result: SimulationResult, key: str) -> list[Any]:
    return [h[key] for h in _aggregator(result).metrics_history]


def _distance(a: Weights, b: Weights) -> float:
    return float(np.sqrt(sum(np.sum((a[n].astype(np.float64) - b[n]) ** 2) for n in a)))


def _initial_model() -> Weights:
    """The global model before round 1 (the aggregator's: `mlp` from seed 0)."""
    return {k: v.numpy() for k, v in build_model("mlp", seed=0).state_dict().items()}


async def test_fedprox_trainers_add_the_proximal_term(tmp_path: Path) -> None:
    prox = await asimulate(EXAMPLES / "fedprox", timeout=TIMEOUT)
    mu0 = _variant(tmp_path, "fedprox", optimizer={"sort": "fedprox", "kwargs": {"mu": 0.0}})
    free = await asimulate(mu0, timeout=TIMEOUT)
    w_prox, w_free = _aggregator(prox).get_weights(), _aggregator(free).get_weights()
    init = _initial_model()
    # the server is FedAvg for any mu: mu reaches the model only through the trainers' loss,
    # where the term pulls each local model towards the round's global one
    assert _distance(w_prox, w_free) > 1e-3
    assert _distance(w_prox, init) < _distance(w_free, init)
    assert len(_history(prox, "test_accuracy")) == 10
    assert _history(prox, "test_accuracy")[-1] >= 0.88


async def test_feddyn_trainers_add_the_dynamic_term(tmp_path: Path) -> None:
    dyn = await asimulate(EXAMPLES / "feddyn", timeout=TIMEOUT)
    strong = _variant(tmp_path, "feddyn", optimizer={"sort": "feddyn", "kwargs": {"alpha": 1.0}})
    other = await asimulate(strong, timeout=TIMEOUT)
    # the server's FedDyn step does not depend on alpha: only the trainers' term does
    assert _distance(_aggregator(dyn).get_weights(), _aggregator(other).get_weights()) > 1e-3
    for trainer in dyn.by_role("trainer"):
        term = trainer.regularizer
        assert isinstance(term, DynTerm)
        assert term.alpha == pytest.approx(0.01)  # alpha_i of equal shards, from round 2 on
        assert any(np.any(h != 0) for h in term.history.values())
    assert _history(dyn, "test_accuracy")[-1] >= 0.92


async def test_scaffold_trainers_apply_the_control_variates() -> None:
    scaffold = await asimulate(EXAMPLES / "scaffold", timeout=TIMEOUT)
    fedavg = await asimulate(EXAMPLES / "two_tier_fedavg", timeout=TIMEOUT)
    # k = 24 = 2 epochs of 12 batches: round 1 (c = c_i = 0) is FedAvg; from round 2 on the
    # trainers' gradients are corrected by c - c_i, so the models part
    s_loss, f_loss = _history(scaffold, "test_loss"), _history(fedavg, "test_loss")
    assert s_loss[0] == pytest.approx(f_loss[0], abs=1e-5)
    assert abs(s_loss[1] - f_loss[1]) > 1e-4
    control = _aggregator(scaffold).optimizer.server_state()[CONTROL]
    assert any(np.any(c != 0) for c in control.values())  # the trainers' control deltas arrived
    for trainer in scaffold.by_role("trainer"):
        term = trainer.regularizer
        assert isinstance(term, ScaffoldTerm)
        assert term.k == 24
        assert any(np.any(c != 0) for c in term.local.values())  # c_i
        assert any(np.any(c != 0) for c in term.control.values())  # c, received
    assert _history(scaffold, "test_accuracy")[-1] >= 0.9


def test_scaffold_trains_exactly_k_steps() -> None:
    wire = next(w for w in expand(EXAMPLES / "scaffold") if w["role"] == "trainer")
    trainer: Any = load_role_class(EXAMPLES / "scaffold" / "trainer" / "main.py")(wire)
    positions = np.arange(375)
    trainer.regularizer = ScaffoldTerm(30)  # 12 batches per pass: two passes and a half
    batches = list(trainer._batches(positions, 32, 2, np.random.default_rng(0)))
    assert [epoch for epoch, _ in batches] == [0] * 12 + [1] * 12 + [2] * 6
    assert sorted(np.concatenate([idx.numpy() for _, idx in batches[:12]])) == list(positions)
    trainer.regularizer = ScaffoldTerm(5)  # stops within the first pass
    assert len(list(trainer._batches(positions, 32, 2, np.random.default_rng(0)))) == 5
    trainer.regularizer = Regularizer()  # any other optimizer: `epochs` passes
    assert len(list(trainer._batches(positions, 32, 2, np.random.default_rng(0)))) == 24


async def test_fedopt_runs_adam_adagrad_and_yogi(tmp_path: Path) -> None:
    spec = json.loads((EXAMPLES / "fedopt" / "modelSpec.json").read_text())
    assert spec["optimizer"]["sort"] == "fedadam"
    losses: dict[str, list[float]] = {}
    reached = {"fedadam": 0.9, "fedadagrad": 0.8, "fedyogi": 0.9}
    for sort, accuracy in reached.items():
        folder = EXAMPLES / "fedopt"
        if sort != "fedadam":
            optimizer = {**spec["optimizer"], "sort": sort}
            folder = _variant(tmp_path / sort, "fedopt", optimizer=optimizer)
        result = await asimulate(folder, timeout=TIMEOUT)
        assert _aggregator(result).optimizer.sort == sort
        losses[sort] = _history(result, "test_loss")
        assert _history(result, "test_accuracy")[-1] >= accuracy, sort
    firsts = [run[0] for run in losses.values()]
    lasts = sorted(run[-1] for run in losses.values())
    assert max(firsts) - min(firsts) < 1e-5  # round 1 of every FedOpt is FedAvg
    # then their second moments part (Adam's and Yogi's first steps are equal, from v = 0)
    assert all(b - a > 1e-5 for a, b in itertools.pairwise(lasts)), losses


async def test_oort_selects_overcommitted_ends_by_the_trainers_utilities() -> None:
    result = await asimulate(EXAMPLES / "oort", timeout=TIMEOUT)
    # aggr_num 4 over 8 trainers: 5 picked (1.3 overcommit). Round 1 is random; round 2
    # explores the 3 unseen trainers and exploits 2 of the 5 that reported a utility; from
    # round 3 on all 8 have reported, so all 5 are picked by utility
    assert _history(result, "selected") == [5] * 10
    assert _history(result, "updates") == [5] * 10
    assert _history(result, "explored") == [0, 2] + [5] * 8
    utilities = [t.stat_utility for t in result.by_role("trainer")]
    assert all(u is not None and u > 0 for u in utilities)  # all 8 trained by round 2
    assert _history(result, "test_accuracy")[-1] >= 0.8


async def test_fedbalancer_trainers_sample_fewer_examples() -> None:
    result = await asimulate(EXAMPLES / "fedbalancer", timeout=TIMEOUT)
    examples = _history(result, "examples")
    assert examples[0] == 1500  # round 1 trains on everything and records the losses
    # a loss threshold and a deadline cut the later selections (to about 640 on an idle
    # machine: the deadline, whole seconds of the measured round times, is then 1 s)
    assert examples[-1] < 1350, examples
    sampler = _aggregator(result).datasampler
    assert sampler.loss_threshold > 0 and sampler.deadline is not None
    trainers = sorted(result.by_role("trainer"), key=lambda t: t.client_id)
    sizes = [t.dataset_size for t in trainers]
    assert 0 < sizes[-1] < 375, sizes  # the slowest simulated device is cut the most...
    assert sizes[0] == max(sizes), sizes  # ...and the fastest trains the most
    assert _history(result, "test_accuracy")[-1] >= 0.88


async def test_dp_clips_and_noises_the_updates(tmp_path: Path) -> None:
    clip = 0.5
    noisy = await asimulate(EXAMPLES / "dp", timeout=TIMEOUT)
    noiseless = {"sort": "dp", "kwargs": {"clip_threshold": clip, "noise_factor": 0.0}}
    exact = _variant(tmp_path / "exact", "dp", privacy=noiseless)
    clipped = await asimulate(exact, rounds=2, timeout=TIMEOUT)
    no_dp = _variant(tmp_path / "raw", "dp", privacy={"sort": "default", "kwargs": {}})
    raw = await asimulate(no_dp, rounds=2, timeout=TIMEOUT)
    assert max(_history(raw, "update_norm")) > 1.1 * clip  # unclipped, the steps are larger
    assert max(_history(clipped, "update_norm")) <= clip * (1 + 1e-6)  # means of clipped
    # the noise (sigma 0.001 on each of 2,410 parameters, averaged over 4) adds about 0.025
    assert max(_history(noisy, "update_norm")) <= clip + 0.05
    w_noisy, w_clipped = _aggregator(noisy).get_weights(), _aggregator(clipped).get_weights()
    assert _distance(w_noisy, w_clipped) > 1e-3
    assert _history(noisy, "test_accuracy")[-1] >= 0.85
