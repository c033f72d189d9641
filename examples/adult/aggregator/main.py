"""Adult aggregator: FedAvg of one random trainer per round, scored on the test rows."""

from __future__ import annotations

import sys

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.tabular import TabularEvaluation


class AdultAggregator(TabularEvaluation, TopAggregator):
    """Scores each global model on `testDataset` (`flame_sdk/workloads/tabular.py`)."""


if __name__ == "__main__":
    role = AdultAggregator(sys.argv[1])
    role.compose()
    role.run()
