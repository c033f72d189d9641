"""FedDyn trainer: SGD on one digits shard with FedDyn's dynamic regulariser in the loss."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class FedDynTrainer(DigitsTraining, Trainer):
    """`DigitsTraining.train` adds `self.regularizer_term()` to every batch's loss: with the
    `feddyn` optimizer that is `alpha_i·⟨w, g_i⟩ + (alpha_i/2)·‖w - w_t‖²`, `g_i` the sum of
    this trainer's past updates (its state after each upload)."""


if __name__ == "__main__":
    role = FedDynTrainer(sys.argv[1])
    role.compose()
    role.run()
