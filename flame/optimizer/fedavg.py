"""`flame.optimizer.fedavg.FedAvg`: our SDK's `FedAvg`."""

from flame_sdk.optimizers.fedavg import FedAvg

__all__ = ["FedAvg"]
