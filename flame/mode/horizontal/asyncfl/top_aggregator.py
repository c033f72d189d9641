"""`flame.mode.horizontal.asyncfl.top_aggregator.TopAggregator`: our SDK's FedBuff top."""

from flame.mode.role import Role
from flame_sdk.roles import AsyncTopAggregator


class TopAggregator(Role, AsyncTopAggregator):
    """A new model version every `aggGoal` updates (needs `optimizer: fedbuff` and the
    `fedbuff` selector with concurrency `c`), for `hyperparameters.rounds` versions."""
