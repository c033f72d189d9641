"""FedBalancer trainer: SGD on the samples FedBalancer selects, on a simulated slow device."""

from __future__ import annotations

import sys

from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class FedBalancerTrainer(DigitsTraining, Trainer):
    """`DigitsTraining.train` trains on `self.datasampler.sample(...)` and records the first
    epoch's per-sample losses and every batch's time.

    The batch times are those of a simulated device, so that the deadline binds on one
    machine: the trainer of shard i spends `deviceSecondsPerSample·(i + 1)` seconds per sample
    (the hyperparameter; without it the measured time is used).
    """

    def batch_seconds(self, measured: float, samples: int) -> float:
        per_sample = self.config.hyperparameters.get("deviceSecondsPerSample")
        if per_sample is None:
            return measured
        return float(per_sample) * (self.client_id + 1) * samples


if __name__ == "__main__":
    role = FedBalancerTrainer(sys.argv[1])
    role.compose()
    role.run()
