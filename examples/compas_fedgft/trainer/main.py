"""FedGFT trainer: two-year recidivism on one COMPAS-shaped shard, with the fairness term."""

from __future__ import annotations

import sys

from flame_sdk.workloads.tabular import FairTabularTrainer


class Trainer(FairTabularTrainer):
    """The workload's trainer as is (see `flame_sdk/workloads/tabular.py`)."""


if __name__ == "__main__":
    role = Trainer(sys.argv[1])
    role.compose()
    role.run()
