"""Adult trainer: one shard of the Adult-shaped rows, SGD on a small MLP (PyTorch)."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.tabular import TabularTraining


class AdultTrainer(TabularTraining, Trainer):
    """The workload's trainer as is (see `flame_sdk/workloads/tabular.py`)."""


if __name__ == "__main__":
    role = AdultTrainer(sys.argv[1])
    role.compose()
    role.run()
