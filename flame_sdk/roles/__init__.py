"""Role base classes users subclass: trainers and aggregators of every mode, the coordinator."""

from flame_sdk.roles.async_coordinator import AsyncCoordinator
from flame_sdk.roles.async_middle_aggregator import AsyncMiddleAggregator
from flame_sdk.roles.async_top_aggregator import AsyncTopAggregator
from flame_sdk.roles.base import Role
from flame_sdk.roles.coordinated import (
    CoordinatedMiddleAggregator,
    CoordinatedTopAggregator,
    CoordinatedTrainer,
)
from flame_sdk.roles.coordinated_async import (
    CoordinatedAsyncMiddleAggregator,
    CoordinatedAsyncTopAggregator,
    CoordinatedAsyncTrainer,
)
from flame_sdk.roles.coordinator import Coordinator
from flame_sdk.roles.distributed import DistributedTrainer
from flame_sdk.roles.fedgft import FedGFTTopAggregator, FedGFTTrainer
from flame_sdk.roles.hybrid import HybridTopAggregator, HybridTrainer
from flame_sdk.roles.lifl import CoordinatedLeafAggregator, LiflCoordinator
from flame_sdk.roles.middle_aggregator import MiddleAggregator
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.trainer import Trainer
from flame_sdk.roles.waits import PeerWaitError

__all__ = [
    "AsyncCoordinator",
    "AsyncMiddleAggregator",
    "AsyncTopAggregator",
    "CoordinatedAsyncMiddleAggregator",
    "CoordinatedAsyncTopAggregator",
    "CoordinatedAsyncTrainer",
    "CoordinatedLeafAggregator",
    "CoordinatedMiddleAggregator",
    "CoordinatedTopAggregator",
    "CoordinatedTrainer",
    "Coordinator",
    "DistributedTrainer",
    "FedGFTTopAggregator",
    "FedGFTTrainer",
    "HybridTopAggregator",
    "HybridTrainer",
    "LiflCoordinator",
    "MiddleAggregator",
    "PeerWaitError",
    "Role",
    "TopAggregator",
    "Trainer",
]
