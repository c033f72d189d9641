"""FedAvg and FedProx on the server: `w ← w + Σ_i (n_i/N)·Δ_i`, folded in one update at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Extras, Optimizer
from flame_sdk.optimizers.kernels import ScaledAdd
from flame_sdk.optimizers.regularizers import ProxTerm
from flame_sdk.weights import Weights, apply_step, zeros_like


class WeightedSum:
    """Running `Σ weight_i·Δ_i` and `Σ weight_i`, folded in place into one array per name.

    The sums run in each array's `accumulator_dtype` (float32 stays float32, integers sum in
    float64); an update is folded without temporaries of its size. `mean`/`divided` turn the sums
    into their result in place, after which the accumulator is used up.
    """

    def __init__(self, like: Mapping[str, np.ndarray]) -> None:
        self.sums = zeros_like(like)
        self.total = 0.0
        self._add = ScaledAdd()

    def add(self, delta: Mapping[str, np.ndarray], weight: float) -> None:
        """Fold `weight·delta` in (names and shapes of the sums; weight 0 adds nothing)."""
        if weight:
            for name, acc in self.sums.items():
                self._add(acc, delta[name], weight)
        self.total += weight

    def divided(self, divisor: float) -> Weights:
        """The sums divided by `divisor`, in place."""
        for acc in self.sums.values():
            np.divide(acc, divisor, out=acc)
        return self.sums

    def mean(self) -> Weights | None:
        """`Σ weight_i·Δ_i / Σ weight_i` in place; None (sums untouched) for total weight 0."""
        return None if self.total <= 0 else self.divided(self.total)


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
