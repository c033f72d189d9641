"""Digits aggregator of a hybrid job: FedAvg of the groups' updates, evaluated on the test set."""

from __future__ import annotations

import sys

from flame_sdk.roles.hybrid import HybridTopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class DigitsAggregator(DigitsEvaluation, HybridTopAggregator):
    """Scores each global model on the central test set (`flame_sdk/workloads/digits.py`)."""


if __name__ == "__main__":
    role = DigitsAggregator(sys.argv[1])
    role.compose()
    role.run()
