"""SCAFFOLD aggregator: mean update and server control variate, evaluated on the test set."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class ScaffoldAggregator(DigitsEvaluation, TopAggregator):
    """The `scaffold` optimizer sends its control variate `c` with every model and folds the
    trainers' control deltas into it."""


if __name__ == "__main__":
    role = ScaffoldAggregator(sys.argv[1])
    role.compose()
    role.run()
