"""`flame.mode.horizontal.middle_aggregator`: Flame's alias of the syncfl `MiddleAggregator`."""

from flame.mode.horizontal.syncfl.middle_aggregator import MiddleAggregator

__all__ = ["MiddleAggregator"]
