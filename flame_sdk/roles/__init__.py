"""Role base classes users subclass: Trainer, TopAggregator, MiddleAggregator, async variants."""

from flame_sdk.roles.async_middle_aggregator import AsyncMiddleAggregator
from flame_sdk.roles.async_top_aggregator import AsyncTopAggregator
from flame_sdk.roles.base import Role
from flame_sdk.roles.middle_aggregator import MiddleAggregator
from flame_sdk.roles.top_aggregator import TopAggregator
from flame_sdk.roles.trainer import Trainer

__all__ = [
    "AsyncMiddleAggregator",
    "AsyncTopAggregator",
    "MiddleAggregator",
    "Role",
    "TopAggregator",
    "Trainer",
]
