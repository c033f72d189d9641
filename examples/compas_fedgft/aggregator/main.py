"""FedGFT aggregator: aggregates the bias and the updates, scores accuracy and parity gap."""

from __future__ import annotations

import sys

from flame_sdk.roles.fedgft import FedGFTTopAggregator
from flame_sdk.workloads.tabular import FairTabularEvaluation


class FairAggregator(FairTabularEvaluation, FedGFTTopAggregator):
    """Scores each global model on `testDataset` (`flame_sdk/workloads/tabular.py`)."""


if __name__ == "__main__":
    role = FairAggregator(sys.argv[1])
    role.compose()
    role.run()
