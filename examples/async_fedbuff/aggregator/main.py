"""Digits aggregator of asynchronous FL (FedBuff), evaluated on the central test set."""

from __future__ import annotations

import json
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from flame_sdk.datasets import load_dataset
from flame_sdk.roles import AsyncTopAggregator


def build_model(kind: str) -> nn.Module:
    """`mlp`: 64-32-10 (2,410 parameters); `mlp10m`: 64-1536x5-10 (9.6M parameters)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    if kind == "mlp10m":
        layers: list[nn.Module] = [nn.Linear(64, 1536), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Linear(1536, 1536), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(1536, 10))
    raise ValueError(f"unknown model {kind!r}")


class DigitsAggregator(AsyncTopAggregator):
    framework = "torch"

    def load_data(self) -> None:
        url = self.config.hyperparameters.get("testDataset", "digits://test")
        data = load_dataset(url)
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)

    def initialize(self) -> None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = build_model(self.config.hyperparameters.get("model", "mlp"))
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
