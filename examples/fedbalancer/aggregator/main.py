"""FedBalancer aggregator: steers the trainers' sample selection; FedAvg; test-set scores."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class FedBalancerAggregator(DigitsEvaluation, TopAggregator):
    """The aggregator half of the `fedbalancer` data sampler sends each round's loss threshold
    and deadline with the model and reads the trainers' loss and time reports."""


if __name__ == "__main__":
    role = FedBalancerAggregator(sys.argv[1])
    role.compose()
    role.run()
