"""Region aggregator of 3-tier async FL: buffers its trainers' updates, reports to the top."""

from __future__ import annotations

import sys

from flame_sdk.roles import AsyncMiddleAggregator


class RegionAggregator(AsyncMiddleAggregator):
    """Uses the base class's chain as is; no model, data or evaluation of its own."""


if __name__ == "__main__":
    role = RegionAggregator(sys.argv[1])
    role.compose()
    role.run()
