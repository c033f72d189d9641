"""`flame.optimizer.feddyn.FedDyn`: our SDK's `FedDyn`."""

from flame_sdk.optimizers.feddyn import FedDyn

__all__ = ["FedDyn"]
