"""`flame.mode.horizontal.syncfl.trainer.Trainer`: our SDK's `Trainer` for Flame role code."""

from flame.mode.role import Role
from flame_sdk.roles import Trainer as SdkTrainer


class Trainer(Role, SdkTrainer):
    """fetch >> train >> evaluate >> upload >> save_metrics per round, until EOT; set
    `self.dataset_size` in `load_data` or `train`."""
