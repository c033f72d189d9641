"""`flame.optimizer.fedadam.FedAdam`: our SDK's `FedAdam`."""

from flame_sdk.optimizers.fedopt import FedAdam

__all__ = ["FedAdam"]
