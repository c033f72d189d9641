"""`flame.mode.horizontal.syncfl.top_aggregator.TopAggregator`: our SDK's `TopAggregator`."""

from flame.mode.role import Role
from flame_sdk.roles import TopAggregator as SdkTopAggregator


class TopAggregator(Role, SdkTopAggregator):
    """distribute >> aggregate >> train >> evaluate >> save_metrics >> inc_round for
    `hyperparameters.rounds` rounds, then EOT (with the final model), params and model."""
