"""FedAvg and FedProx on the server: `w ← w + Σ_i (n_i/N)·Δ_i`, folded in one update at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Extras, Optimizer
from flame_sdk.optimizers.regularizers import ProxTerm
from flame_sdk.optimizers.weights import Weights, apply_step, zeros_like


class WeightedSum:
    """Running `Σ weight_i·Δ_i` and `Σ weight_i`: one float64 array per name, whatever the count."""

    def __init__(self, like: Mapping[str, np.ndarray]) -> None:
        self.sums = zeros_like(like)
        self.total = 0.0

    def add(self, delta: Mapping[str, np.ndarray], weight: float) -> None:
        for name, acc in self.sums.items():
            acc += np.multiply(delta[name], weight, dtype=np.float64)
        self.total += weight

    def mean(self) -> Weights | None:
        """`Σ weight_i·Δ_i / Σ weight_i`, None when the total weight is 0."""
        if self.total <= 0:
            return None
        return {name: acc / self.total for name, acc in self.sums.items()}


class MeanAggregation(Aggregation):
    """Weighted (by `num_examples`) or plain mean of the deltas, added to the base."""

    def __init__(self, base: Weights, version: int, *, weighted: bool = True) -> None:
        super().__init__(base, version)
        self.weighted = weighted
        self.acc = WeightedSum(base)

    def _fold(
        self, delta: Mapping[str, np.ndarray], num_examples: int, version: int, extras: Extras
    ) -> None:
        self.acc.add(delta, float(num_examples) if self.weighted else 1.0)

    def _finish(self) -> Weights | None:
        step = self.acc.mean()
        return None if step is None else apply_step(self.base, step)


class FedAvg(Optimizer):
    """Federated averaging weighted by the clients' example counts."""

    sort: ClassVar[str] = "fedavg"

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        return MeanAggregation(base, version)


class FedProx(FedAvg):
    """FedAvg on the server; clients add `(mu/2)·‖w - w_t‖²` (see `ProxTerm`)."""

    sort: ClassVar[str] = "fedprox"

    def __init__(self, mu: float) -> None:
        super().__init__(ProxTerm(mu))
