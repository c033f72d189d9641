"""Tiny numpy roles for fault-tolerance tests (fast, deterministic)."""

from __future__ import annotations

import threading
import time

import numpy as np

from flame_sdk.roles import TopAggregator, Trainer


class CountingTrainer(Trainer):
    """Adds 1 to every weight per round; `block_round` makes `train` hang until released."""

    delay = 0.0

    def __init__(self, *args: object, block_round: int = 0) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.block_round = block_round
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.rounds_trained: list[int] = []

    def initialize(self) -> None:
        self.model = {"w": np.zeros(4, dtype=np.float32)}

    def load_data(self) -> None:
        self.dataset_size = 10

    def train(self) -> None:
        if self.round == self.block_round:
            self.blocked.set()
            self.release.wait(30)
        time.sleep(self.delay)
        self.rounds_trained.append(self.round)
        self.model["w"] = self.model["w"] + 1.0

    def evaluate(self) -> None:
        """Nothing to evaluate."""


class SumAggregator(TopAggregator):
    def initialize(self) -> None:
        self.model = {"w": np.zeros(4, dtype=np.float32)}

    def load_data(self) -> None:
        """No data."""

    def train(self) -> None:
        """No server training."""

    def evaluate(self) -> None:
        self.update_metrics({"w": float(self.model["w"][0])})
