"""SCAFFOLD on the server (Karimireddy et al.): plain mean of the model deltas, control update.

Every update must carry `extras={"control": Δc_i}` (the client's weighted control delta, float
arrays named like the model's float arrays), else `add` raises ValueError: a weight update without
its control update is refused. Per round with participants S and population M (trainers that
reported sizes through `client_coefficients`; the round's participant count until then):
`x ← x + (1/|S|)·Σ_S Δy_i` and `c ← c + (1/M)·Σ_S Δc_i`. `server_state()` is `{"control": c}`
(zeros before the first round), to broadcast with the weights. `client_coefficients` gives
`omega_i = (n_i/N)·M`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Extras, Optimizer, total_examples
from flame_sdk.optimizers.fedavg import MeanAggregation, WeightedSum
from flame_sdk.optimizers.regularizers import CONTROL, ScaffoldTerm
from flame_sdk.weights import Weights, check_like, check_numeric, is_float, zeros_like


def _float_part(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: a for name, a in weights.items() if is_float(a)}


class Scaffold(Optimizer):
    """Stochastic controlled averaging; server state: global control c, population M."""

    sort: ClassVar[str] = "scaffold"

    def __init__(self, k: int) -> None:
        super().__init__(ScaffoldTerm(k))
        self.population: int | None = None
        self.control: Weights | None = None

    def client_coefficients(self, sizes: Mapping[str, int]) -> dict[str, float]:
        total = total_examples(sizes, self.sort)
        self.population = len(sizes)
        return {end: n / total * self.population for end, n in sizes.items()}

    def server_state(self) -> dict[str, Weights]:
        return {} if self.control is None else {CONTROL: self.control}

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        like = _float_part(base)
        if self.control is None:
            self.control = zeros_like(like)
        check_like(like, self.control, "the model (changed since scaffold's first round)")
        return _ScaffoldAggregation(self, base, version)

    def update_control(self, control_sum: Weights, count: int) -> None:
        """`c ← c + (1/M)·Σ Δc_i` after a round of `count` participants (`control_sum` is used up).

        The sums become the new control; the arrays of the old one are left as they were.
        """
        if self.control is None:
            raise RuntimeError("scaffold: begin() a round before updating the control")
        population = self.population or count
        for name, total in control_sum.items():
            np.divide(total, population, out=total)
            total += self.control[name]
        self.control = control_sum


class _ScaffoldAggregation(MeanAggregation):
    def __init__(self, optimizer: Scaffold, base: Weights, version: int) -> None:
        super().__init__(base, version, weighted=False)
        self.optimizer = optimizer
        self.controls = WeightedSum(_float_part(base))

    def _fold(
        self, delta: Mapping[str, np.ndarray], num_examples: int, version: int, extras: Extras
    ) -> None:
        if CONTROL not in extras:
            raise ValueError("scaffold: update has no 'control' extras (control-variate delta)")
        check_like(self.controls.sums, extras[CONTROL], "extras['control']")
        check_numeric(extras[CONTROL], "extras['control']")
        super()._fold(delta, num_examples, version, extras)
        self.controls.add(extras[CONTROL], 1.0)

    def _finish(self) -> Weights | None:
        result = super()._finish()
        self.optimizer.update_control(self.controls.sums, self.count)
        return result
