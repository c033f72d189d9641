"""The fair-digits workload (PyTorch, FedGFT): a binary digits task with a synthetic group.

The task is "digit >= 5"; the group of an image is 1 when its top half holds more ink than its
bottom half, which makes the positive rate differ between the groups (0.63 vs 0.34 on the test
set), so an accurate classifier has a statistical-parity gap. `FairDigitsTrainer` trains the
`mlp` with two outputs plus FedGFT's fairness term; `FairDigitsEvaluation` (top aggregator mixin)
reports `test_accuracy` and `test_sp_gap`, |P(ŷ=1 | g=0) - P(ŷ=1 | g=1)| on the test set.
Hyperparameters: `epochs`, `batchSize`, `learningRate` (default 0.1), `testDataset`
(default `digits://test`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from flame_sdk.datasets import Dataset, load_dataset
from flame_sdk.roles.base import Role
from flame_sdk.roles.fedgft import FedGFTTrainer
from flame_sdk.workloads.digits import build_model


def fair_task(data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(x, y, group)` of digits data: `y` = digit >= 5, `group` = top-heavy ink."""
    half = data.x.shape[1] // 2
    group = data.x[:, :half].sum(1) > data.x[:, half:].sum(1)
    positive, top_heavy = (torch.from_numpy(a.astype(np.int64)) for a in (data.y >= 5, group))
    return torch.from_numpy(data.x), positive, top_heavy


def sp_gap(predicted: torch.Tensor, group: torch.Tensor) -> float:
    """|P(ŷ=1 | g=0) - P(ŷ=1 | g=1)| of 0/1 predictions (0 when a group is empty)."""
    rates = [predicted[group == g].float().mean() for g in (0, 1) if bool((group == g).any())]
    return float(abs(rates[0] - rates[1])) if len(rates) == 2 else 0.0


class FairDigitsTrainer(FedGFTTrainer):
    """SGD on the shard `config.dataset` with cross-entropy plus FedGFT's fairness term."""

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model("mlp", outputs=2)

    def load_data(self) -> None:
        data = load_dataset(self.config.dataset)
        self.fair_data = fair_task(data)
        self.dataset_size = len(data)
        self.client_id = data.shard

    def train(self) -> None:
        hp = self.config.hyperparameters
        assert self.fair_data is not None  # load_data
        x, y, group = self.fair_data
        batch = int(hp["batchSize"])
        optimizer = torch.optim.SGD(self.model.parameters(), lr=float(hp.get("learningRate", 0.1)))
        rng = np.random.default_rng([self.round, self.client_id])
        self.model.train()
        for _ in range(int(hp["epochs"])):
            order = torch.from_numpy(rng.permutation(self.dataset_size))
            for start in range(0, self.dataset_size, batch):
                idx = order[start : start + batch]
                outputs = self.model(x[idx])
                loss = F.cross_entropy(outputs, y[idx])
                loss = loss + self.fairness_term(outputs, y[idx], group[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def evaluate(self) -> None:
        """No client-side evaluation in this workload."""


class FairDigitsEvaluation(Role):
    """Top aggregator mixin: the two-output `mlp` from seed 0, scored on the test set."""

    framework = "torch"

    def load_data(self) -> None:
        url = self.config.hyperparameters.get("testDataset", "digits://test")
        self.x, self.y, self.group = fair_task(load_dataset(url))

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model("mlp", seed=0, outputs=2)

    def train(self) -> None:
        """The server does not train."""

    def evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            predicted = self.model(self.x).argmax(1)
        accuracy = float((predicted == self.y).float().mean())
        gap = sp_gap(predicted, self.group)
        self.update_metrics({"test_accuracy": accuracy, "test_sp_gap": gap})
