"""`flame.optimizer.fedadagrad.FedAdaGrad`: our SDK's `FedAdaGrad`."""

from flame_sdk.optimizers.fedopt import FedAdaGrad

__all__ = ["FedAdaGrad"]
