"""DP trainer: SGD on one digits shard; its update is clipped and noised before upload."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class DPTrainer(DigitsTraining, Trainer):
    """The workload's trainer as is: `Trainer.upload` applies the job's `dp` privacy to the
    update (L2 norm clipped to `clip_threshold`, then `N(0, noise_factor²)` per element)."""


if __name__ == "__main__":
    role = DPTrainer(sys.argv[1])
    role.compose()
    role.run()
