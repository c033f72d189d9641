"""`flame.optimizer.fedprox.FedProx`: our SDK's `FedProx`."""

from flame_sdk.optimizers.fedavg import FedProx

__all__ = ["FedProx"]
