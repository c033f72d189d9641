"""`default` (every end) and `random` (k uniformly drawn ends) per-round selectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.selectors.base import EndState, PerRoundSelector, sample


class DefaultSelector(PerRoundSelector):
    """All current ends; late joiners wait for the next round (the set is frozen per round)."""

    sort: ClassVar[str] = "default"

    def pick(self, ends: Mapping[str, EndState], round_: int) -> list[str]:
        return sorted(ends)


class RandomSelector(PerRoundSelector):
    """`min(k, |ends|)` ends drawn uniformly, re-drawn only when the round increases."""

    sort: ClassVar[str] = "random"

    def __init__(self, k: int, seed: int | None = None) -> None:
        super().__init__()
        self.k = k
        self.rng = np.random.default_rng(seed)

    def pick(self, ends: Mapping[str, EndState], round_: int) -> list[str]:
        return sample(self.rng, sorted(ends), self.k)
