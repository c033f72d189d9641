"""`flame.mode.horizontal.trainer`: Flame's alias of the syncfl `Trainer`."""

from flame.mode.horizontal.syncfl.trainer import Trainer

__all__ = ["Trainer"]
