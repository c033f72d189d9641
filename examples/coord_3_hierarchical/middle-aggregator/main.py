"""Middle aggregator: FedAvg of the leaf aggregators the coordinator gave it, sent to the top."""

from __future__ import annotations

import sys

from flame_sdk.roles.coordinated import CoordinatedMiddleAggregator


class PairedAggregator(CoordinatedMiddleAggregator):
    """Uses the base class's chain as is; no model, data or evaluation of its own."""


if __name__ == "__main__":
    role = PairedAggregator(sys.argv[1])
    role.compose()
    role.run()
