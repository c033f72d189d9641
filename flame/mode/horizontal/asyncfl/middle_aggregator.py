"""`flame.mode.horizontal.asyncfl.middle_aggregator.MiddleAggregator`: our SDK's FedBuff one."""

from flame.mode.role import Role
from flame_sdk.roles import AsyncMiddleAggregator


class MiddleAggregator(Role, AsyncMiddleAggregator):
    """Buffers its trainers' updates for each fetched model until its `aggGoal`, then uploads."""
