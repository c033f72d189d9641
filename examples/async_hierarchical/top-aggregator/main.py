"""Digits top aggregator of 3-tier asynchronous FL (FedBuff), evaluated on the central test set."""

from __future__ import annotations

import itertools
import json
import math
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from flame_sdk.datasets import load_dataset
from flame_sdk.roles import AsyncTopAggregator


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


class DigitsAggregator(AsyncTopAggregator):
    framework = "torch"

    def load_data(self) -> None:
        url = self.config.hyperparameters.get("testDataset", "digits://test")
        data = load_dataset(url)
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model(self.config.hyperparameters.get("model", "mlp"), seed=0)
        self._report(0, *self._score())

    def train(self) -> None:
        """The server does not train."""

    def evaluate(self) -> None:
        loss, accuracy = self._score()
        self.update_metrics({"test_loss": loss, "test_accuracy": accuracy})
        self._report(self.round, loss, accuracy)

    def _score(self) -> tuple[float, float]:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.x)
            loss = F.cross_entropy(logits, self.y).item()
            accuracy = (logits.argmax(1) == self.y).float().mean().item()
        return loss, accuracy

    def _report(self, round_: int, loss: float, accuracy: float) -> None:
        line = {"evaluation": round_, "loss": loss, "accuracy": accuracy, "time": time.time()}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    role = DigitsAggregator(sys.argv[1])
    role.compose()
    role.run()
