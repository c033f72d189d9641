"""Digits top aggregator: FedAvg of the round's middle aggregators, evaluated on the test set."""

from __future__ import annotations

import sys

from flame_sdk.roles.coordinated import CoordinatedTopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class DigitsAggregator(DigitsEvaluation, CoordinatedTopAggregator):
    """Scores each global model on the central test set (`flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsAggregator(sys.argv[1])
    role.compose()
    role.run()
