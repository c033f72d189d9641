"""Digits trainer: one shard of scikit-learn's digits, SGD on a small MLP (PyTorch)."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flame_sdk.datasets import load_dataset
from flame_sdk.roles import Trainer


def build_model(kind: str, seed: int | None = None) -> nn.Module:
    """`mlp`: 64-32-10 (2,410 parameters); `mlp10m`: 64-1536x5-10 (9.6M parameters).

    With a seed, the layers get PyTorch's default Linear initialisation drawn from a private
    generator (the same numbers as right after `torch.manual_seed(seed)`), so roles building
    models in other threads of a simulation cannot disturb it.
    """
    widths = {"mlp": [64, 32], "mlp10m": [64, *[1536] * 5]}.get(kind)
    if widths is None:
        raise ValueError(f"unknown model {kind!r}")
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in model:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                    bound = 1 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return model


class DigitsTrainer(Trainer):
    framework = "torch"

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
        optimizer = torch.optim.SGD(self.model.parameters(), lr=float(hp.get("learningRate", 0.1)))
        rng = np.random.default_rng([self.round, self.client_id])
        self.model.train()
        for _ in range(int(hp["epochs"])):
            order = torch.from_numpy(rng.permutation(self.dataset_size))
            for start in range(0, self.dataset_size, batch):
                idx = order[start : start + batch]
                loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def evaluate(self) -> None:
        """No client-side evaluation in this workload."""


if __name__ == "__main__":
    role = DigitsTrainer(sys.argv[1])
    role.compose()
    role.run()
