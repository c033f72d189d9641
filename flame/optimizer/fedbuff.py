"""`flame.optimizer.fedbuff.FedBuff`: our SDK's `FedBuff`."""

from flame_sdk.optimizers.fedbuff import FedBuff

__all__ = ["FedBuff"]
