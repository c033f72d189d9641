"""Leaf aggregator: FedAvg of the trainers the coordinator assigned it, sent to its middle
aggregator of the round."""

from __future__ import annotations

import sys

from flame_sdk.roles.lifl import CoordinatedLeafAggregator


class LeafAggregator(CoordinatedLeafAggregator):
    """Uses the base class's chain as is; no model, data or evaluation of its own."""


if __name__ == "__main__":
    role = LeafAggregator(sys.argv[1])
    role.compose()
    role.run()
