"""FedOpt trainer: plain SGD on one digits shard (the adaptivity is on the server)."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class FedOptTrainer(DigitsTraining, Trainer):
    """The workload's trainer as is: FedOpt adds no client term."""


if __name__ == "__main__":
    role = FedOptTrainer(sys.argv[1])
    role.compose()
    role.run()
