"""`flame.optimizer.scaffold.Scaffold`: our SDK's `Scaffold`."""

from flame_sdk.optimizers.scaffold import Scaffold

__all__ = ["Scaffold"]
