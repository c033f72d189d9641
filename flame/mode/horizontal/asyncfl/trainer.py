"""`flame.mode.horizontal.asyncfl.trainer`: the syncfl trainer, as in Flame."""

from flame.mode.horizontal.syncfl.trainer import Trainer

__all__ = ["Trainer"]
