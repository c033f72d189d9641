"""FedBuff (asynchronous FL): staleness-discounted sum of buffered deltas, applied every K updates.

One aggregation is one buffer: `begin(w, v)` at model version v; each `add(Δ_i, n_i, v_i)` folds
`S ← S + Δ_i / √(1 + v - v_i)` (example counts ignored; a version newer than v counts as fresh);
`result()` after K adds is `w + S/K`. The caller decides K (the aggregation goal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Extras, Optimizer
from flame_sdk.optimizers.fedavg import MeanAggregation
from flame_sdk.weights import Weights, apply_step


class _BufferAggregation(MeanAggregation):
    def __init__(self, base: Weights, version: int) -> None:
        super().__init__(base, version, weighted=False)

    def _fold(
        self, delta: Mapping[str, np.ndarray], num_examples: int, version: int, extras: Extras
    ) -> None:
        staleness = max(0, self.version - version)
        self.acc.add(delta, 1.0 / math.sqrt(1 + staleness))

    def _finish(self) -> Weights | None:
        return apply_step(self.base, self.acc.divided(self.count))


class FedBuff(Optimizer):
    """Buffered asynchronous aggregation."""

    sort: ClassVar[str] = "fedbuff"

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        return _BufferAggregation(base, version)
