"""DP aggregator: FedAvg of the clipped, noised updates; test-set scores and step size."""

from __future__ import annotations

import math
import sys

import numpy as np

from flame_sdk.roles import TopAggregator
from flame_sdk.workloads.digits import DigitsEvaluation


class DPAggregator(DigitsEvaluation, TopAggregator):
    """Also reports `update_norm`, the L2 norm of each round's global step: the mean of updates
    clipped to `clip_threshold` stays within it, plus the noise."""

    async def aggregate(self) -> None:
        before = self.weights
        await super().aggregate()
        if before is not None and self.weights is not None:
            squares = sum(
                float(np.sum(np.square(self.weights[n] - before[n], dtype=np.float64)))
                for n in before
            )
            self.update_metrics({"update_norm": math.sqrt(squares)})


if __name__ == "__main__":
    role = DPAggregator(sys.argv[1])
    role.compose()
    role.run()
