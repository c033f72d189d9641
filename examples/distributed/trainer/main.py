"""Digits trainer without a server: trains on its shard, then ring all-reduce with its peers."""

from __future__ import annotations

import sys

from flame_sdk.roles.distributed import DistributedTrainer
from flame_sdk.workloads.digits import DigitsPeerTraining


class DigitsTrainer(DigitsPeerTraining, DistributedTrainer):
    """The workload's trainer, scoring each round's averaged model on the test set."""


if __name__ == "__main__":
    role = DigitsTrainer(sys.argv[1])
    role.compose()
    role.run()
