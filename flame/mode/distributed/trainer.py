"""`flame.mode.distributed.trainer.Trainer`: our SDK's ring all-reduce `DistributedTrainer`."""

from flame.mode.role import Role
from flame_sdk.roles import DistributedTrainer


class Trainer(Role, DistributedTrainer):
    """member_check >> train >> ring_allreduce >> evaluate >> save_metrics >> inc_round for
    `hyperparameters.rounds` rounds; set `self.dataset_size` (the all-reduce weight)."""
