"""The digits workload's role code (PyTorch): the MLP, shard training, test-set evaluation.

The examples' `<role>/main.py` put these mixins in front of a mode class, e.g.
`class DigitsTrainer(DigitsTraining, Trainer)` or `class A(DigitsEvaluation, TopAggregator)`;
trainers of jobs without an aggregator use `DigitsPeerTraining`, which also evaluates.
Hyperparameters read: `model` (`mlp` or `mlp10m`), `epochs`, `batchSize`, `learningRate`
(default 0.1) and, where a role evaluates, `testDataset` (default `digits://test`). The trainer
runs the client side of whatever the job configures (optimizer term, data sampler, Oort utility;
privacy is applied by the mode's upload), so every algorithm example shares it.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flame_sdk.datasamplers import DefaultTrainerSampler, TrainerSampler
from flame_sdk.datasets import load_dataset
from flame_sdk.optimizers import Regularizer, ScaffoldTerm
from flame_sdk.roles.base import Role
from flame_sdk.roles.trainer import Trainer
from flame_sdk.selectors import statistical_utility


def build_model(kind: str, seed: int | None = None, outputs: int = 10) -> nn.Module:
    """`mlp`: 64-32-10 (2,410 parameters); `mlp10m`: 64-1536x5-10 (9.6M parameters); `outputs`
    classes instead of 10 when given.

    With a seed, the layers get PyTorch's default Linear initialisation drawn from a private
    generator (the same numbers as right after `torch.manual_seed(seed)`), so roles building
    models in other threads of a simulation cannot disturb it.
    """
    widths = {"mlp": [64, 32], "mlp10m": [64, *[1536] * 5]}.get(kind)
    if widths is None:
        raise ValueError(f"unknown model {kind!r} (mlp or mlp10m)")
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], outputs))
    if seed is not None:
        seeded_init(model, seed)
    return model


def seeded_init(model: nn.Sequential, seed: int) -> None:
    """Give `model`'s Linear layers PyTorch's default initialisation drawn from a private
    generator of `seed` (the numbers `torch.manual_seed(seed)` would give, without touching the
    global generator other threads of a simulation use)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def report(round_: int, loss: float, accuracy: float) -> None:
    """Print one evaluation as a JSON line `{"evaluation", "loss", "accuracy", "time"}` (read
    by the benchmarks and the quickstart)."""
    line = {"evaluation": round_, "loss": loss, "accuracy": accuracy, "time": time.time()}
    print(json.dumps(line), flush=True)


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(cross-entropy loss, accuracy) of `model` on `(x, y)`."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


class DigitsTraining(Role):
    """Trainer mixin: SGD on the `config.dataset` shard, batches shuffled per (round, shard).

    Each round it runs the client side of the job's algorithms, so one loop serves them all:
    - the data sampler picks the round's samples (`default`: all of them); the first epoch
      records their per-sample losses and every batch its time (`batch_seconds`), and
      `dataset_size` becomes the number of samples trained on;
    - on a `Trainer`, the optimizer's client term (`regularizer_term`: FedProx, FedDyn,
      SCAFFOLD) is added to the loss, except FedAvg's zero term; SCAFFOLD trains exactly its
      `k` local steps (passes over the samples repeat or stop early) instead of `epochs`;
    - with the `oort` selector, `stat_utility` is the round's statistical utility over the
      first epoch's per-sample losses.
    With none of these configured the loop is plain SGD over every sample for `epochs` epochs.
    """

    framework = "torch"
    datasampler: TrainerSampler
    learning_rate: float | None
    stat_utility: float | None

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model(self.config.hyperparameters.get("model", "mlp"))

    def load_data(self) -> None:
        data = load_dataset(self.config.dataset)
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        self.client_id = data.shard
        self.dataset_size = len(data)

    def train(self) -> None:
        hp = self.config.hyperparameters
        batch = int(hp["batchSize"])
        self.learning_rate = float(hp.get("learningRate", 0.1))
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.learning_rate)
        rng = np.random.default_rng([self.round, self.client_id])
        selected = self.datasampler.sample(len(self.y))
        self.dataset_size = len(selected)
        term = self._loss_term()
        oort = self.config.selector.sort == "oort"
        track = oort or not isinstance(self.datasampler, DefaultTrainerSampler)
        first_losses: list[np.ndarray] = []
        self.model.train()
        for epoch, idx in self._batches(selected, batch, int(hp["epochs"]), rng):
            started = time.perf_counter()
            logits = self.model(self.x[idx])
            loss = F.cross_entropy(logits, self.y[idx])
            if track and epoch == 0:
                losses = F.cross_entropy(logits.detach(), self.y[idx], reduction="none").numpy()
                self.datasampler.record_losses(idx.numpy(), losses)
                first_losses.append(losses)
            if term is not None:
                loss = loss + term()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - started
            self.datasampler.record_batch_time(self.batch_seconds(elapsed, len(idx)))
        optimizer.zero_grad(set_to_none=True)  # the gradients (one model's size) are not needed
        if oort and first_losses:
            self.stat_utility = statistical_utility(np.concatenate(first_losses), len(selected))

    def batch_seconds(self, measured: float, samples: int) -> float:
        """The time of a batch of `samples` samples that the data sampler records (FedBalancer
        sizes its selection by it): the measured seconds. Override to model a device."""
        return measured

    def _loss_term(self) -> Callable[[], torch.Tensor] | None:
        """The optimizer's client term on a `Trainer` (None for FedAvg's zero term)."""
        if isinstance(self, Trainer) and type(self.regularizer) is not Regularizer:
            return self.regularizer_term
        return None

    def _batches(
        self, selected: np.ndarray, batch: int, epochs: int, rng: np.random.Generator
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(epoch, dataset positions) of each batch: `epochs` shuffled passes over `selected`,
        or SCAFFOLD's exactly `k` batches (as many passes as that takes)."""
        steps = None
        if isinstance(self, Trainer) and isinstance(self.regularizer, ScaffoldTerm):
            steps = self.regularizer.k
        done = 0
        for epoch in itertools.count():
            if len(selected) == 0 or (steps is None and epoch == epochs):
                return
            order = torch.from_numpy(selected[rng.permutation(len(selected))])
            for start in range(0, len(selected), batch):
                if done == steps:
                    return
                yield epoch, order[start : start + batch]
                done += 1

    def evaluate(self) -> None:
        """No client-side evaluation in this workload."""


class DigitsPeerTraining(DigitsTraining):
    """Trainer mixin for jobs without an aggregator (distributed): `DigitsTraining` from the
    model of seed 0 (as the aggregator's), and each round's final model scored on the central
    test set (`testDataset`, default `digits://test`) as `test_loss` and `test_accuracy`, and
    printed as a JSON line like `DigitsEvaluation`'s."""

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model(self.config.hyperparameters.get("model", "mlp"), seed=0)

    def load_data(self) -> None:
        super().load_data()
        test = load_dataset(self.config.hyperparameters.get("testDataset", "digits://test"))
        self.x_test, self.y_test = torch.from_numpy(test.x), torch.from_numpy(test.y)

    def evaluate(self) -> None:
        loss, accuracy = score(self.model, self.x_test, self.y_test)
        self.update_metrics({"test_loss": loss, "test_accuracy": accuracy})
        report(self.round, loss, accuracy)


class DigitsEvaluation(Role):
    """Top aggregator mixin: the model from seed 0, scored on the central test set each round.

    Each evaluation (0 = the initial model) is also printed as one JSON line (`report`).
    """

    framework = "torch"

    def load_data(self) -> None:
        data = load_dataset(self.config.hyperparameters.get("testDataset", "digits://test"))
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model(self.config.hyperparameters.get("model", "mlp"), seed=0)
        report(0, *self._score())

    def train(self) -> None:
        """The server does not train."""

    def evaluate(self) -> None:
        loss, accuracy = self._score()
        self.update_metrics({"test_loss": loss, "test_accuracy": accuracy})
        report(self.round, loss, accuracy)

    def _score(self) -> tuple[float, float]:
        return score(self.model, self.x, self.y)
