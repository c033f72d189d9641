"""FedProx aggregator: FedAvg of the trainers' updates, evaluated on the central test set."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class FedProxAggregator(DigitsEvaluation, TopAggregator):
    """The server side of FedProx is FedAvg; each global model is scored on the test set."""


if __name__ == "__main__":
    role = FedProxAggregator(sys.argv[1])
    role.compose()
    role.run()
