"""Oort trainer: SGD on one digits shard; reports its statistical utility with the update."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class OortTrainer(DigitsTraining, Trainer):
    """With the `oort` selector, `DigitsTraining.train` sets `self.stat_utility` to
    `|B|·√(mean(loss²))` over the first epoch's per-sample losses; `upload` sends it."""


if __name__ == "__main__":
    role = OortTrainer(sys.argv[1])
    role.compose()
    role.run()
