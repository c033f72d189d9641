"""Digits aggregator: FedAvg of the round's partitions, evaluated on the central test set."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class DigitsAggregator(DigitsEvaluation, TopAggregator):
    """Scores each global model on the central test set (`flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsAggregator(sys.argv[1])
    role.compose()
    role.run()
