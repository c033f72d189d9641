"""Digits trainer: one shard of scikit-learn's digits, trained for the leaf aggregator of the
round."""

from __future__ import annotations

import sys

from flame_sdk.roles.coordinated import CoordinatedTrainer
from flame_sdk.workloads.digits import DigitsTraining


class DigitsTrainer(DigitsTraining, CoordinatedTrainer):
    """The workload's trainer as is (see `flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsTrainer(sys.argv[1])
    role.compose()
    role.run()
