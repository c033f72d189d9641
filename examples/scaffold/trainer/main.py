"""SCAFFOLD trainer: k corrected SGD steps on one digits shard, then its control update."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class ScaffoldTrainer(DigitsTraining, Trainer):
    """`DigitsTraining.train` runs exactly the optimizer's `k` steps with the learning rate it
    sets as `self.learning_rate`, each gradient corrected by `c - c_i` through
    `self.regularizer_term()`; `upload` then sends the control delta with the model delta."""


if __name__ == "__main__":
    role = ScaffoldTrainer(sys.argv[1])
    role.compose()
    role.run()
