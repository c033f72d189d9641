"""Byzantine-robust rules: coordinate-wise median, trimmed mean and (multi-)Krum.

Unlike the streaming rules these must see every update at once, so their aggregation BUFFERS the
K deltas (references to the caller's arrays, which must not be mutated until `result()`); memory
is K models. Example counts are ignored on purpose (a malicious client could inflate them).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.optimizers.base import Aggregation, Extras, Optimizer
from flame_sdk.weights import Weights, apply_step

Delta = Mapping[str, np.ndarray]


class _BufferedAggregation(Aggregation):
    def __init__(self, rule: RobustRule, base: Weights, version: int) -> None:
        super().__init__(base, version)
        self.rule = rule
        self.deltas: list[Delta] = []

    def _fold(self, delta: Delta, num_examples: int, version: int, extras: Extras) -> None:
        self.deltas.append(delta)

    def _finish(self) -> Weights | None:
        return apply_step(self.base, self.rule.combine(self.deltas))


def _stack(deltas: list[Delta], name: str) -> np.ndarray:
    return np.stack([np.asarray(d[name], dtype=np.float64) for d in deltas])


class RobustRule(Optimizer):
    """A rule that combines the buffered deltas of one round into one step."""

    def begin(self, base: Weights, version: int = 0) -> Aggregation:
        return _BufferedAggregation(self, base, version)

    @abc.abstractmethod
    def combine(self, deltas: list[Delta]) -> Weights:
        """The step (float64 by name) from at least one delta."""


class Median(RobustRule):
    """Coordinate-wise median of the deltas."""

    sort: ClassVar[str] = "median"

    def combine(self, deltas: list[Delta]) -> Weights:
        return {name: np.median(_stack(deltas, name), axis=0) for name in deltas[0]}


class TrimmedMean(RobustRule):
    """Coordinate-wise mean after dropping the ⌊beta·K⌋ largest and smallest values."""

    sort: ClassVar[str] = "trimmedmean"

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def combine(self, deltas: list[Delta]) -> Weights:
        cut = int(self.beta * len(deltas))
        kept = slice(cut, len(deltas) - cut)
        return {
            name: np.sort(_stack(deltas, name), axis=0)[kept].mean(axis=0) for name in deltas[0]
        }


class Krum(RobustRule):
    """(Multi-)Krum: mean of the m deltas with the smallest Krum scores.

    A delta's score is the sum of squared L2 distances (over all arrays) to its K - f - 2 nearest
    other deltas. The guarantee needs K ≥ 2f + 3; with fewer updates the neighbour count is clamped
    to [1, K - 1] (a single update is taken as is). Ties go to the earlier update.
    """

    sort: ClassVar[str] = "krum"

    def __init__(self, f: int, m: int = 1) -> None:
        super().__init__()
        self.f, self.m = f, m

    def scores(self, deltas: list[Delta]) -> np.ndarray:
        k = len(deltas)
        dist = np.zeros((k, k))
        for name in deltas[0]:
            flat = _stack(deltas, name).reshape(k, -1)
            for i in range(k):
                dist[i] += np.sum((flat - flat[i]) ** 2, axis=1)
        neighbours = min(max(k - self.f - 2, 1), k - 1)
        others = np.sort(dist + np.diag(np.full(k, np.inf)), axis=1)[:, :neighbours]
        return others.sum(axis=1)

    def combine(self, deltas: list[Delta]) -> Weights:
        chosen = np.argsort(self.scores(deltas), kind="stable")[: self.m]
        picked = [deltas[i] for i in chosen]
        return {name: _stack(picked, name).mean(axis=0) for name in deltas[0]}
