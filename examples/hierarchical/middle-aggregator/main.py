"""Region aggregator: FedAvg of its region's trainers, forwarded to the top aggregator."""

from __future__ import annotations

import sys

from flame_sdk.roles import MiddleAggregator


class RegionAggregator(MiddleAggregator):
    """Uses the base class's chain as is; no model, data or evaluation of its own."""


if __name__ == "__main__":
    role = RegionAggregator(sys.argv[1])
    role.compose()
    role.run()
