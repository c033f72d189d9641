"""Adaptive server optimizers (Reddi et al.): FedAdaGrad, FedAdam and FedYogi.

The pseudo-gradient is the example-weighted mean delta `d_t`. The first aggregation is plain FedAvg
(`x ← x̄`); later ones take `m_t = β1·m + (1-β1)·d_t`, `v_t` per variant, and
`x_t = x + η·m_t / (√v_t + τ)`, with `m`, `v` starting at 0 and no bias correction. Integer arrays
(counters) always take the FedAvg step. The moments live in the optimizer across rounds.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Optimizer
from flame_sdk.optimizers.fedavg import MeanAggregation
from flame_sdk.optimizers.kernels import ScaledAdd
from flame_sdk.weights import Weights, apply_step, check_like, is_float, zeros_like


class FedOpt(Optimizer):
    """Shared FedOpt logic; subclasses choose the second-moment rule."""

    def __init__(
        self, beta_1: float = 0.9, beta_2: float = 0.99, eta: float = 1e-2, tau: float = 1e-3
    ) -> None:
        super().__init__()
        self.beta_1, self.beta_2, self.eta, self.tau = beta_1, beta_2, eta, tau
        self.m: Weights | None = None
        self.v: Weights | None = None

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        return _FedOptAggregation(self, base, version)

    def step(self, base: Weights, mean_delta: Weights) -> Weights:
        """Advance the moments with `d_t = mean_delta` and return the new weights.

        `mean_delta` (arrays in their `accumulator_dtype`, like the moments) is used up.
        """
        if self.m is None or self.v is None:
            self.m, self.v = zeros_like(base), zeros_like(base)
            return apply_step(base, mean_delta)
        check_like(base, self.m, "the model (changed since the optimizer's first round)")
        add = ScaledAdd()
        for name, d in mean_delta.items():
            if not is_float(base[name]):
                continue  # the FedAvg step
            m, v = self.m[name], self.v[name]
            m *= self.beta_1
            add(m, d, 1 - self.beta_1)
            self.update_second_moment(v, np.square(d, out=d))
            step = np.sqrt(v, out=d)
            step += self.tau
            np.divide(m, step, out=step)
            step *= self.eta
        return apply_step(base, mean_delta)

    @abc.abstractmethod
    def update_second_moment(self, v: np.ndarray, d2: np.ndarray) -> None:
        """`v ← v_t` in place from `v_{t-1}` and `d_t²` (`d2` may be overwritten)."""


class _FedOptAggregation(MeanAggregation):
    def __init__(self, optimizer: FedOpt, base: Weights, version: int) -> None:
        super().__init__(base, version)
        self.optimizer = optimizer

    def _finish(self) -> Weights | None:
        mean_delta = self.acc.mean()
        return None if mean_delta is None else self.optimizer.step(self.base, mean_delta)


class FedAdaGrad(FedOpt):
    """`v_t = v + d_t²` (β2 unused)."""

    sort: ClassVar[str] = "fedadagrad"

    def update_second_moment(self, v: np.ndarray, d2: np.ndarray) -> None:
        v += d2


class FedAdam(FedOpt):
    """`v_t = β2·v + (1-β2)·d_t²`."""

    sort: ClassVar[str] = "fedadam"

    def update_second_moment(self, v: np.ndarray, d2: np.ndarray) -> None:
        v *= self.beta_2
        d2 *= 1 - self.beta_2
        v += d2


class FedYogi(FedOpt):
    """`v_t = v - (1-β2)·d_t²·sign(v - d_t²)`."""

    sort: ClassVar[str] = "fedyogi"

    def update_second_moment(self, v: np.ndarray, d2: np.ndarray) -> None:
        sign = np.sign(v - d2)
        d2 *= sign
        d2 *= 1 - self.beta_2
        v -= d2
