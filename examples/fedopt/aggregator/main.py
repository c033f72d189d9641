"""FedOpt aggregator: an adaptive server step (FedAdam, FedAdaGrad or FedYogi), evaluated."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class FedOptAggregator(DigitsEvaluation, TopAggregator):
    """The modelSpec's optimizer (`fedadam`, `fedadagrad` or `fedyogi`) turns the mean update
    into an adaptive step; each global model is scored on the test set."""


if __name__ == "__main__":
    role = FedOptAggregator(sys.argv[1])
    role.compose()
    role.run()
