"""`flame.mode.horizontal.syncfl.middle_aggregator.MiddleAggregator`: our SDK's (FedAvg)."""

from flame.mode.role import Role
from flame_sdk.roles import MiddleAggregator as SdkMiddleAggregator


class MiddleAggregator(Role, SdkMiddleAggregator):
    """fetch >> distribute >> aggregate >> upload >> evaluate per round, until EOT."""
