"""FedGFT trainer: 'digit >= 5' on one digits shard, with the fairness term of the global bias."""

from __future__ import annotations

import sys

from flame_sdk.workloads.fair_digits import FairDigitsTrainer


class Trainer(FairDigitsTrainer):
    """The workload's trainer as is (see `flame_sdk/workloads/fair_digits.py`)."""


if __name__ == "__main__":
    role = Trainer(sys.argv[1])
    role.compose()
    role.run()
