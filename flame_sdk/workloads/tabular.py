"""The tabular workloads (PyTorch): a small MLP on `adult://` / `compas://` rows, FedGFT on COMPAS.

`TabularTraining` (trainer mixin) and `TabularEvaluation` (top aggregator mixin) train and
score a binary classifier on the rows of `config.dataset` (any scheme of `flame_sdk.datasets`
whose `x` is a float32 table). `FairTabularTrainer` / `FairTabularEvaluation` are the
fair-digits FedGFT roles of `fair_digits.py` on such a table, the group being the column
`groupColumn` (default `COMPAS_GROUP_COLUMN`). Hyperparameters: `hidden` (the MLP's hidden
width, default 16; 0 is logistic regression), `epochs`, `batchSize`, `learningRate` (default
0.1) and, where a role evaluates, `testDataset` (required: e.g. `adult://test`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flame_sdk.config import ConfigError
from flame_sdk.datasets import COMPAS_GROUP_COLUMN, Dataset, load_dataset
from flame_sdk.roles.base import Role
from flame_sdk.workloads.digits import score, seeded_init
from flame_sdk.workloads.fair_digits import FairDigitsEvaluation, FairDigitsTrainer


def build_mlp(inputs: int, hidden: int = 16, seed: int | None = None) -> nn.Module:
    """`inputs`-`hidden`-2 with a ReLU (`hidden` 0: one linear layer, logistic regression).

    With a seed, the layers get PyTorch's default Linear initialisation drawn from a private
    generator, so roles building models in other threads of a simulation cannot disturb it.
    """
    if hidden < 0:
        raise ValueError(f"hidden width must be >= 0, got {hidden}")
    layers: list[nn.Module] = [nn.Linear(inputs, 2)]
    if hidden:
        layers = [nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 2)]
    model = nn.Sequential(*layers)
    if seed is not None:
        seeded_init(model, seed)
    return model


def evaluation_url(role: Role) -> str:
    """The `testDataset` hyperparameter (ConfigError when missing: tables have no default)."""
    url = role.config.hyperparameters.get("testDataset")
    if not url:
        raise ConfigError("hyperparameters.testDataset is required (e.g. 'adult://test')")
    return str(url)


def hidden_width(role: Role) -> int:
    return int(role.config.hyperparameters.get("hidden", 16))


class TabularTraining(Role):
    """Trainer mixin: SGD on the `config.dataset` rows, batches shuffled per (round, shard).

    Each round's mean training loss is the metric `train_loss`.
    """

    framework = "torch"

    def load_data(self) -> None:
        data = load_dataset(self.config.dataset)
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        self.client_id = data.shard
        self.dataset_size = len(data)

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_mlp(self.x.shape[1], hidden_width(self))

    def train(self) -> None:
        hp = self.config.hyperparameters
        batch = int(hp["batchSize"])
        optimizer = torch.optim.SGD(self.model.parameters(), lr=float(hp.get("learningRate", 0.1)))
        rng = np.random.default_rng([self.round, self.client_id])
        losses: list[float] = []
        self.model.train()
        for _ in range(int(hp["epochs"])):
            order = torch.from_numpy(rng.permutation(len(self.y)))
            for start in range(0, len(self.y), batch):
                idx = order[start : start + batch]
                loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        self.update_metrics({"train_loss": float(np.mean(losses)) if losses else math.nan})

    def evaluate(self) -> None:
        """No client-side evaluation in this workload."""


class TabularEvaluation(Role):
    """Top aggregator mixin: the MLP from seed 0, scored on `testDataset` each round as
    `test_loss` and `test_accuracy`."""

    framework = "torch"

    def load_data(self) -> None:
        data = load_dataset(evaluation_url(self))
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_mlp(self.x.shape[1], hidden_width(self), seed=0)

    def train(self) -> None:
        """The server does not train."""

    def evaluate(self) -> None:
        loss, accuracy = score(self.model, self.x, self.y)
        self.update_metrics({"test_loss": loss, "test_accuracy": accuracy})


def fair_table(role: Role, data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(x, y, group)` of a table whose column `groupColumn` holds the 0/1 group."""
    column = int(role.config.hyperparameters.get("groupColumn", COMPAS_GROUP_COLUMN))
    if not 0 <= column < data.x.shape[1]:
        raise ConfigError(f"hyperparameters.groupColumn {column} is not a column of the data")
    group = data.x[:, column]
    if not np.isin(group, (0.0, 1.0)).all():
        raise ValueError(f"column {column} of the data is not a 0/1 group")
    return (
        torch.from_numpy(data.x),
        torch.from_numpy(data.y),
        torch.from_numpy(group.astype(np.int64)),
    )


class FairTabularTrainer(FairDigitsTrainer):
    """FedGFT trainer (cross-entropy plus the fairness term) on the `config.dataset` rows."""

    def load_data(self) -> None:
        data = load_dataset(self.config.dataset)
        self.fair_data = fair_table(self, data)
        self.dataset_size = len(data)
        self.client_id = data.shard

    def initialize(self) -> None:
        torch.set_num_threads(1)
        assert self.fair_data is not None  # load_data
        self.model = build_mlp(self.fair_data[0].shape[1], hidden_width(self))


class FairTabularEvaluation(FairDigitsEvaluation):
    """Top aggregator mixin: the MLP from seed 0, scored on `testDataset` each round as
    `test_accuracy` and `test_sp_gap` (|P(ŷ=1 | g=0) - P(ŷ=1 | g=1)|)."""

    def load_data(self) -> None:
        self.x, self.y, self.group = fair_table(self, load_dataset(evaluation_url(self)))

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_mlp(self.x.shape[1], hidden_width(self), seed=0)
