"""Digits trainer of a hybrid job: trains on its shard, all-reduces with its group's ring."""

from __future__ import annotations

import sys

from flame_sdk.roles.hybrid import HybridTrainer
from flame_sdk.workloads.digits import DigitsTraining


class DigitsTrainer(DigitsTraining, HybridTrainer):
    """The workload's trainer as is (see `flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsTrainer(sys.argv[1])
    role.compose()
    role.run()
