"""Middle aggregator: buffers the updates of the trainers the coordinator gives it (FedBuff)."""

from __future__ import annotations

import sys

from flame_sdk.roles.coordinated_async import CoordinatedAsyncMiddleAggregator


class BufferingAggregator(CoordinatedAsyncMiddleAggregator):
    """Uses the base class's chain as is; no model, data or evaluation of its own."""


if __name__ == "__main__":
    role = BufferingAggregator(sys.argv[1])
    role.compose()
    role.run()
