"""The optimizer port: an `Optimizer` opens one streaming `Aggregation` per round or buffer."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.regularizers import Regularizer
from flame_sdk.weights import Weights, check_like, check_numeric

Extras = Mapping[str, Mapping[str, np.ndarray]]


class Aggregation(abc.ABC):
    """Folds client updates into the new global weights as they arrive.

    Single-threaded: the caller serialises `add`/`result`. `base` is kept by reference and must not
    be mutated while the aggregation is open. Once `result()` returned weights, the aggregation is
    finished (later calls return the same weights, `add` raises RuntimeError); a `None` result
    (nothing added, or zero total weight) leaves it open for more updates.
    """

    def __init__(self, base: Weights, version: int) -> None:
        self.base = base
        self.version = version
        self._count = 0
        self._result: Weights | None = None

    @property
    def count(self) -> int:
        """How many updates were folded in."""
        return self._count

    def add(
        self,
        delta: Mapping[str, np.ndarray],
        num_examples: int,
        version: int,
        *,
        extras: Extras | None = None,
    ) -> None:
        """Fold in one client's update `delta = w_i - w_global` trained at model `version`."""
        if self._result is not None:
            raise RuntimeError("aggregation already produced its result; begin a new one")
        if num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {num_examples}")
        check_like(self.base, delta, "delta")
        check_numeric(delta, "delta")
        self._fold(delta, num_examples, version, extras or {})
        self._count += 1

    def result(self) -> Weights | None:
        """The new global weights, or None when nothing (of positive weight) was added."""
        if self._result is None and self._count:
            self._result = self._finish()
        return self._result

    @abc.abstractmethod
    def _fold(
        self, delta: Mapping[str, np.ndarray], num_examples: int, version: int, extras: Extras
    ) -> None:
        """Validate the update's extras, then fold it in (all-or-nothing)."""

    @abc.abstractmethod
    def _finish(self) -> Weights | None:
        """Compute the new weights from what was folded in (called at most once with a value)."""


class Optimizer(abc.ABC):
    """Server-side aggregation rule; holds the state that persists across rounds."""

    sort: ClassVar[str]

    def __init__(self, regularizer: Regularizer | None = None) -> None:
        self.regularizer: Regularizer = regularizer or Regularizer()

    @abc.abstractmethod
    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        """Open an aggregation on the current global weights `base` (model `version`)."""

    def client_coefficients(self, sizes: Mapping[str, int]) -> dict[str, float]:
        """Per-client coefficient to send with the weights, from every trainer's example count.

        Also fixes the population size M used by the server math. Empty for rules without one.
        """
        return {}

    def server_state(self) -> dict[str, Weights]:
        """Extra named arrays to broadcast with the weights (SCAFFOLD's control); usually empty."""
        return {}


def total_examples(sizes: Mapping[str, int], sort: str) -> int:
    """Σ n_i over the trainers; ValueError if there are none or one reports no examples."""
    if not sizes:
        raise ValueError(f"{sort}: no trainer reported its dataset size")
    bad = sorted(end for end, n in sizes.items() if n <= 0)
    if bad:
        raise ValueError(f"{sort}: trainers {bad} reported no examples")
    return sum(sizes.values())
