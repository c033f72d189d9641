"""FedDyn aggregator: the FedDyn server update, evaluated on the central test set."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class FedDynAggregator(DigitsEvaluation, TopAggregator):
    """The `feddyn` optimizer keeps the drift state and sends each trainer its `alpha_i`."""


if __name__ == "__main__":
    role = FedDynAggregator(sys.argv[1])
    role.compose()
    role.run()
