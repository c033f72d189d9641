"""`flame.optimizer.fedyogi.FedYogi`: our SDK's `FedYogi`."""

from flame_sdk.optimizers.fedopt import FedYogi

__all__ = ["FedYogi"]
