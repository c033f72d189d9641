"""The torch client term of `Trainer.regularizer_term`: FedProx's value, gradient and effect."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
import torch

from flame_sdk.config import Config
from flame_sdk.optimizers import create_optimizer
from flame_sdk.roles import TopAggregator, Trainer
from flame_sdk.simulation import run_roles
from flame_sdk.torch_terms import loss_term
from tests.sdk.helpers import task_config


def _linear(weight: list[list[float]], bias: list[float]) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, len(bias))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def test_fedprox_term_and_gradient_match_a_hand_computation() -> None:
    model = _linear([[1.0, 2.0]], [0.5])
    w_t = {
        "weight": np.array([[0.0, 1.0]], dtype=np.float32),
        "bias": np.array([1.5], dtype=np.float32),
    }
    regularizer = create_optimizer("fedprox", {"mu": 0.5}).regularizer
    term = loss_term(regularizer, model, w_t)
    # (mu/2)·‖w - w_t‖² = 0.25 · (1² + 1² + (-1)²) = 0.75
    assert term.item() == pytest.approx(0.75)
    term.backward()
    # d/dw = mu·(w - w_t)
    np.testing.assert_allclose(model.weight.grad.numpy(), [[0.5, 0.5]])  # type: ignore[union-attr]
    np.testing.assert_allclose(model.bias.grad.numpy(), [-0.5])  # type: ignore[union-attr]


def test_fedavg_term_is_zero_and_numpy_models_are_refused() -> None:
    model = _linear([[1.0, 2.0]], [0.5])
    w_t = {"weight": np.zeros((1, 2), np.float32), "bias": np.zeros(1, np.float32)}
    assert loss_term(create_optimizer("fedavg", {}).regularizer, model, w_t).item() == 0.0
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        loss_term(create_optimizer("fedprox", {"mu": 1.0}).regularizer, {"w": 1}, w_t)  # type: ignore[arg-type]


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


class ProxTrainer(Trainer):
    framework = "torch"

    def initialize(self) -> None:
        self.model = _linear([[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0])
        self.deltas: list[float] = []

    def load_data(self) -> None:
        self.x, self.y = _data(int(self.config.taskid[-1]))
        self.dataset_size = len(self.y)

    def train(self) -> None:
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.5)
        for _ in range(20):
            loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
            loss = loss + self.regularizer_term()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert self.weights is not None
        moved = [np.sum((v - self.weights[k]) ** 2) for k, v in self.get_weights().items()]
        self.deltas.append(float(np.sqrt(sum(moved))))

    def evaluate(self) -> None:
        """Nothing to evaluate."""


class PlainAggregator(TopAggregator):
    framework = "torch"

    def initialize(self) -> None:
        self.model = _linear([[0.3, -0.2], [-0.1, 0.4]], [0.1, -0.1])

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        """Nothing to evaluate."""


async def _run(optimizer: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[float]]:
    job = uuid.uuid4().hex
    extra = {"hyperparameters": {"rounds": 2, "minEnds": 2}, "optimizer": optimizer}
    agg = PlainAggregator(Config.load(task_config("aggregator", "agg", job, **extra)))
    trainers = [
        ProxTrainer(Config.load(task_config("trainer", f"t{i}", job, **extra))) for i in (1, 2)
    ]
    await run_roles([agg, *trainers], timeout=60)
    return agg.get_weights(), [d for t in trainers for d in t.deltas]


async def test_fedprox_training_differs_from_fedavg_and_stays_closer_to_the_global() -> None:
    avg, avg_moves = await _run({"sort": "fedavg", "kwargs": {}})
    zero, _ = await _run({"sort": "fedprox", "kwargs": {"mu": 0.0}})
    prox, prox_moves = await _run({"sort": "fedprox", "kwargs": {"mu": 2.0}})
    for name in avg:  # mu = 0 adds exactly nothing; mu > 0 changes the model
        np.testing.assert_array_equal(zero[name], avg[name])
    assert any(not np.allclose(prox[n], avg[n], atol=1e-3) for n in avg)
    assert len(prox_moves) == len(avg_moves) == 4
    assert max(prox_moves) < min(avg_moves), (prox_moves, avg_moves)


class StepTrainer(ProxTrainer):
    """20 SGD steps at lr 0.5 with the optimizer's client term (SCAFFOLD's k, learning rate)."""

    def initialize(self) -> None:
        super().initialize()
        self.learning_rate = 0.5


async def _run_roles(optimizer: dict[str, Any], rounds: int) -> tuple[Any, list[StepTrainer]]:
    job = uuid.uuid4().hex
    extra = {"hyperparameters": {"rounds": rounds, "minEnds": 2}, "optimizer": optimizer}
    agg = PlainAggregator(Config.load(task_config("aggregator", "agg", job, **extra)))
    trainers = [
        StepTrainer(Config.load(task_config("trainer", f"t{i}", job, **extra))) for i in (1, 2)
    ]
    await run_roles([agg, *trainers], timeout=60)
    return agg, trainers


async def test_torch_scaffold_through_the_roles_keeps_c_the_mean_of_the_clients_controls() -> None:
    agg, trainers = await _run_roles({"sort": "scaffold", "kwargs": {"k": 20}}, rounds=3)
    control = agg.optimizer.control
    assert control, "the server control was never updated"
    for name, c in control.items():  # equal dataset sizes: c is the plain mean of the c_i
        mean = np.mean([t.regularizer.local[name] for t in trainers], axis=0)
        np.testing.assert_allclose(c, mean, rtol=1e-5, atol=1e-6)
    assert all(len(t.deltas) == 3 for t in trainers)


async def test_torch_feddyn_through_the_roles_accumulates_each_clients_drift() -> None:
    agg, trainers = await _run_roles({"sort": "feddyn", "kwargs": {"alpha": 0.1}}, rounds=2)
    for t in trainers:
        assert t.regularizer.alpha == pytest.approx(0.1)  # equal sizes: alpha_i = alpha
        assert set(t.regularizer.history) == {"weight", "bias"}
    avg, _ = await _run({"sort": "fedavg", "kwargs": {}})
    assert any(not np.allclose(agg.get_weights()[n], avg[n], atol=1e-4) for n in avg)
