"""FedProx trainer: SGD on one digits shard with the proximal term in the loss."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class FedProxTrainer(DigitsTraining, Trainer):
    """`DigitsTraining.train` adds `self.regularizer_term()` to every batch's loss: with the
    `fedprox` optimizer that is `(mu/2)·‖w - w_t‖²` against the round's global model `w_t`."""


if __name__ == "__main__":
    role = FedProxTrainer(sys.argv[1])
    role.compose()
    role.run()
