"""`flame.optimizers.optimizer_provider`: server optimizers by sort (`fedavg`, `fedadam`, ...)."""

from flame.provider import Provider
from flame_sdk.optimizers import Optimizer, create_optimizer

optimizer_provider: Provider[Optimizer] = Provider(create_optimizer)
