"""Oort aggregator: the oort selector picks each round's trainers; FedAvg; test-set scores."""

from __future__ import annotations

import sys

from flame_sdk.channels import Channel
from flame_sdk.roles import TopAggregator
from flame_sdk.selectors import STAT_UTILITY
from flame_sdk.weights import Weights
from flame_sdk.workloads.digits import DigitsEvaluation


class OortAggregator(DigitsEvaluation, TopAggregator):
    """The updates' `stat_utility` and round durations become end properties that the `oort`
    selector ranks the trainers by. Each round also reports `selected` (the trainers picked:
    `aggr_num` overcommitted by 1.3) and `explored` (how many of them had reported a utility).
    """

    async def send_model(self, channel: Channel, weights: Weights) -> list[str]:
        ends = await super().send_model(channel, weights)
        known = [e for e in ends if channel.get_end_property(e, STAT_UTILITY) is not None]
        self.update_metrics({"selected": len(ends), "explored": len(known)})
        return ends


if __name__ == "__main__":
    role = OortAggregator(sys.argv[1])
    role.compose()
    role.run()
