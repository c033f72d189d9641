"""Digits trainer: one shard of scikit-learn's digits, SGD on a small MLP (PyTorch)."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class DigitsTrainer(DigitsTraining, Trainer):
    """The workload's trainer as is (see `flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsTrainer(sys.argv[1])
    role.compose()
    role.run()
