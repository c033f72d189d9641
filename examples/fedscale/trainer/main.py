"""Digits trainer that trains on a freshly drawn client partition every round (FedScale-style).

The dataset URL `<scheme>://<i>/<n>` names this trainer's slot `i`. The pool is split into
`partitions` client partitions (`<scheme>://<p>/<partitions>`); each round every trainer
permutes them with the seed `[partitionSeed, round]` and reloads the one at its slot, so the
trainers of a round hold disjoint partitions and each trainer's partition changes with the
round. `redraw` is added to the base chain by name, right before `train`.
"""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import numpy as np
import torch

from flame_sdk.config import ConfigError
from flame_sdk.datasets import load_dataset
from flame_sdk.roles import Trainer
from flame_sdk.workloads.digits import DigitsTraining


class RedrawingTrainer(DigitsTraining, Trainer):
    """`DigitsTraining` on the partition `redraw` loaded for the round (metric `partition`)."""

    def load_data(self) -> None:
        super().load_data()  # the shard of the URL: `client_id` is the slot
        hp = self.config.hyperparameters
        self.partitions = int(hp.get("partitions", 8))
        self.scheme = urlparse(self.config.dataset).scheme
        if not 0 <= self.client_id < self.partitions:
            raise ConfigError(
                f"hyperparameters.partitions ({self.partitions}) must exceed this trainer's "
                f"slot {self.client_id} (dataset {self.config.dataset!r})"
            )
        self.slot = self.client_id

    def redraw(self) -> None:
        seed = int(self.config.hyperparameters.get("partitionSeed", 0))
        partition = int(
            np.random.default_rng([seed, self.round]).permutation(self.partitions)[self.slot]
        )
        data = load_dataset(f"{self.scheme}://{partition}/{self.partitions}")
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        self.client_id = partition  # batches shuffled per (round, partition)
        self.dataset_size = len(data)
        self.update_metrics({"partition": partition})

    def compose(self) -> None:
        super().compose()
        self.insert_tasklet("redraw", before="train")


if __name__ == "__main__":
    role = RedrawingTrainer(sys.argv[1])
    role.compose()
    role.run()
