"""FedDyn on the server (Acar et al.): unweighted mean plus the accumulated-drift correction.

Per round with participants S and population M (trainers that reported sizes through
`client_coefficients`; the round's participant count until then):
`θ = base + (1/|S|)·Σ_S Δ_i` (the average of the client models),
`H ← H + Σ_S Δ_i` (every delta ever uploaded), and the result is the cloud model
`θ̃ = θ + H/M`, which clients train from next round (so `Δ_i` is taken against it).
`H/M` equals the reference's `(1/|A|)·Σ_A h_i` while no trainer leaves; the history of a trainer
that left stays in H. `last_average` keeps θ (the model to evaluate). Integer arrays take the
plain mean step. `client_coefficients` gives `alpha_i = alpha / ((n_i/N)·M)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Optimizer, total_examples
from flame_sdk.optimizers.fedavg import MeanAggregation
from flame_sdk.optimizers.regularizers import DynTerm
from flame_sdk.weights import Weights, applied, check_like, is_float, zeros_like


class FedDyn(Optimizer):
    """Dynamic regularisation; server state: drift sum H, population M."""

    sort: ClassVar[str] = "feddyn"

    def __init__(self, alpha: float) -> None:
        super().__init__(DynTerm(alpha))
        self.alpha = alpha
        self.population: int | None = None
        self.drift: Weights | None = None
        self.last_average: Weights | None = None

    def client_coefficients(self, sizes: Mapping[str, int]) -> dict[str, float]:
        total = total_examples(sizes, self.sort)
        self.population = len(sizes)
        return {end: self.alpha * total / (n * self.population) for end, n in sizes.items()}

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        return _FedDynAggregation(self, base, version)

    def finish(self, base: Weights, delta_sum: Weights, count: int) -> Weights:
        """Fold a round's `Σ Δ_i` over `count` participants; return the cloud model.

        `delta_sum` (arrays in their `accumulator_dtype`, like the drift) is used up: it becomes θ.
        """
        if self.drift is None:
            self.drift = zeros_like(base)
        check_like(base, self.drift, "the model (changed since feddyn's first round)")
        population = self.population or count
        average: Weights = {}
        cloud: Weights = {}
        for name, total in delta_sum.items():
            ref, drift = base[name], self.drift[name]
            np.add(drift, total, out=drift)
            average[name] = theta = applied(ref, np.divide(total, count, out=total))
            if is_float(ref):
                shifted = np.divide(drift, population, out=np.empty_like(drift))
                cloud[name] = np.add(shifted, theta, out=shifted).astype(ref.dtype, copy=False)
            else:
                cloud[name] = theta.copy()
        self.last_average = average
        return cloud


class _FedDynAggregation(MeanAggregation):
    def __init__(self, optimizer: FedDyn, base: Weights, version: int) -> None:
        super().__init__(base, version, weighted=False)
        self.optimizer = optimizer

    def _finish(self) -> Weights | None:
        return self.optimizer.finish(self.base, self.acc.sums, self.count)
