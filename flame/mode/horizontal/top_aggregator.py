"""`flame.mode.horizontal.top_aggregator`: Flame's alias of the syncfl `TopAggregator`."""

from flame.mode.horizontal.syncfl.top_aggregator import TopAggregator

__all__ = ["TopAggregator"]
