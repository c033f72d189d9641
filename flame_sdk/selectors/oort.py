"""`oort` selector (Lai et al., OSDI'21): utility-guided exploitation plus exploration.

Per round it picks `n = ⌊1.3·aggr_num⌋` ends (cached within the round). Round 1, or while no end
has reported a utility: uniformly at random. Later rounds, with exploration fraction ε (0.9, times
0.98 after each such round, floor 0.2): `explore = min(int(n·ε) + 1, #unexplored, n)` unexplored
ends uniformly, the rest exploited among explored ends (those whose end properties carry
`stat_utility`): ranked by utility in DESCENDING order, cutoff = 0.95 * the utility at rank
`exploit`, sampled without replacement with probability ∝ utility among those at or above the
cutoff. Missing exploit slots are filled with more unexplored ends.

Utility of an explored end i: `(min(U_i, P95(U)) + √(0.1·ln(round)/L_i)) · (T/t_i)²` if `t_i > T`
else without the factor, where U_i is the trainer's statistical utility (clipped at the 95th
percentile), L_i the last round the selector picked i (1 if never), t_i its `round_duration` in
float seconds (no penalty when absent), and T the `threshold`-th percentile (30 at first) of the
durations, ∞ once the threshold reaches 100. Pacer: every 20 exploiting rounds with at least 40
of history, if the exploited utility of the last 20 fell below the 20 before, threshold += 5.
Fixes over the reference: clipping applied, descending cutoff, a real (sorted) percentile, and
durations as float seconds (a `timedelta` is converted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np

from flame_sdk.selectors.base import EndState, PerRoundSelector, sample

STAT_UTILITY = "stat_utility"
ROUND_DURATION = "round_duration"


def statistical_utility(
    losses: Sequence[float] | np.ndarray, num_samples: int | None = None
) -> float:
    """Trainer side: `m·√(mean(loss²))` over per-sample losses; m = num_samples or len(losses).

    Pass the local dataset size as `num_samples` when the losses come from one batch.
    """
    values = np.asarray(losses, dtype=np.float64)
    if values.size == 0:
        raise ValueError("statistical_utility needs at least one loss")
    m = values.size if num_samples is None else num_samples
    return float(m * math.sqrt(float(np.mean(values**2))))


def _number(end: str, key: str, value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"end {end!r}: property {key!r} must be a number, got {value!r}")
    return float(value)


class OortSelector(PerRoundSelector):
    """Guided participant selection."""

    sort: ClassVar[str] = "oort"
    overcommit_tenths = 13
    epsilon_decay, epsilon_floor = 0.98, 0.2
    cutoff_ratio, clip_percentile = 0.95, 95.0
    pacer_step, pacer_delta = 20, 5.0

    def __init__(self, aggr_num: int, seed: int | None = None) -> None:
        super().__init__()
        self.aggr_num = aggr_num
        self.rng = np.random.default_rng(seed)
        self.epsilon = 0.9
        self.threshold = 30.0
        self.last_picked: dict[str, int] = {}
        self.exploited: list[float] = []

    def pick(self, ends: Mapping[str, EndState], round_: int) -> list[str]:
        n = min(self.aggr_num * self.overcommit_tenths // 10, len(ends))
        explored = sorted(end for end, state in ends.items() if STAT_UTILITY in state.properties)
        unexplored = sorted(set(ends) - set(explored))
        if round_ <= 1 or not explored:
            chosen = sample(self.rng, sorted(ends), n)
        else:
            utility = self.utilities({end: ends[end] for end in explored}, round_)
            explore = min(int(n * self.epsilon) + 1, len(unexplored), n)
            exploit = self._exploit(utility, n - explore)
            chosen = exploit + sample(self.rng, unexplored, n - len(exploit))
            self._pace(sum(utility[end] for end in exploit))
            self.epsilon = max(self.epsilon * self.epsilon_decay, self.epsilon_floor)
        for end in chosen:
            self.last_picked[end] = round_
        return chosen

    def utilities(self, explored: Mapping[str, EndState], round_: int) -> dict[str, float]:
        """Oort utility of every explored end at `round_` (see the module docstring)."""
        ids = sorted(explored)
        stat = np.array(
            [_number(e, STAT_UTILITY, explored[e].properties[STAT_UTILITY]) for e in ids]
        )
        stat = np.minimum(stat, np.percentile(stat, self.clip_percentile))
        durations = {
            e: _number(e, ROUND_DURATION, explored[e].properties[ROUND_DURATION])
            for e in ids
            if ROUND_DURATION in explored[e].properties
        }
        limit = math.inf
        if durations and self.threshold < 100:
            limit = float(np.percentile(list(durations.values()), self.threshold))
        out: dict[str, float] = {}
        for end, u in zip(ids, stat, strict=True):
            value = float(u) + math.sqrt(0.1 * math.log(round_) / self.last_picked.get(end, 1))
            seconds = durations.get(end)
            if seconds is not None and seconds > limit:
                value *= (limit / seconds) ** 2
            out[end] = value
        return out

    def _exploit(self, utility: Mapping[str, float], k: int) -> list[str]:
        if k <= 0 or not utility:
            return []
        ranked = sorted(utility, key=lambda end: (-utility[end], end))
        cutoff = self.cutoff_ratio * utility[ranked[min(k, len(ranked)) - 1]]
        candidates = [end for end in ranked if utility[end] >= cutoff]
        if len(candidates) <= k:
            return candidates
        weights = np.array([max(utility[end], 0.0) for end in candidates]) + 1e-12
        picks = self.rng.choice(len(candidates), size=k, replace=False, p=weights / weights.sum())
        return [candidates[i] for i in picks]

    def _pace(self, exploited_utility: float) -> None:
        self.exploited.append(exploited_utility)
        step = self.pacer_step
        if len(self.exploited) >= 2 * step and len(self.exploited) % step == 0:
            last, before = sum(self.exploited[-step:]), sum(self.exploited[-2 * step : -step])
            if last < before:
                self.threshold = min(100.0, self.threshold + self.pacer_delta)
