"""Oort selector: utilities worked by hand, descending cutoff, exploration, pacer, caching."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from flame_sdk.selectors import ROUND_DURATION, STAT_UTILITY, End, create_selector
from flame_sdk.selectors.oort import OortSelector, statistical_utility


def oort(aggr_num: int, seed: int = 0) -> OortSelector:
    sel = create_selector("oort", {"aggr_num": aggr_num, "seed": seed})
    assert isinstance(sel, OortSelector)
    return sel


def explored(utility: float, seconds: float | None = None) -> dict[str, float]:
    props = {STAT_UTILITY: utility}
    if seconds is not None:
        props[ROUND_DURATION] = seconds
    return props


def test_statistical_utility() -> None:
    # sqrt(mean([1, 4, 4])) = sqrt(3); m = 3 losses, or the dataset size when given
    assert statistical_utility([1.0, -2.0, 2.0]) == pytest.approx(3 * math.sqrt(3))
    assert statistical_utility([1.0, -2.0, 2.0], num_samples=100) == pytest.approx(
        100 * math.sqrt(3)
    )
    with pytest.raises(ValueError):
        statistical_utility([])


def test_utilities_clip_bonus_and_speed_penalty_by_hand() -> None:
    sel = oort(3)
    pool = {
        "a": End("a", explored(10, 1.0)),
        "b": End("b", explored(20, 2.0)),
        "c": End("c", explored(30, timedelta(seconds=3))),  # timedelta -> float seconds
        "d": End("d", explored(1000, 4.0)),
    }
    got = sel.utilities(pool, 4)
    clip = 30 + 0.85 * (1000 - 30)  # P95 of [10, 20, 30, 1000]: rank 2.85
    limit = 1 + 0.9 * (2 - 1)  # P30 of durations [1, 2, 3, 4]: rank 0.9
    bonus = math.sqrt(0.1 * math.log(4) / 1)  # never picked: L = 1
    assert got["a"] == pytest.approx(10 + bonus)  # 1 s <= T: no penalty
    assert got["b"] == pytest.approx((20 + bonus) * (limit / 2) ** 2)
    assert got["c"] == pytest.approx((30 + bonus) * (limit / 3) ** 2)
    assert got["d"] == pytest.approx((clip + bonus) * (limit / 4) ** 2)
    sel.threshold = 100.0  # T = infinity: no penalty, no float/timedelta mix-up
    assert sel.utilities(pool, 4)["d"] == pytest.approx(clip + bonus)
    with pytest.raises(ValueError, match=r"'a'.*round_duration"):
        sel.utilities({"a": End("a", {STAT_UTILITY: 1.0, ROUND_DURATION: "slow"})}, 2)


def test_first_round_is_random_and_cached_within_the_round() -> None:
    sel = oort(2)  # n = floor(1.3 * 2) = 2
    pool = {i: End(i) for i in "abcdef"}
    picked = sel.select(pool, {"round": 1})
    assert len(picked) == 2 and sel.select(pool, {"round": 1}) == picked
    assert sel.epsilon == 0.9
    assert len(oort(10).select(pool, {"round": 1})) == 6  # never more than there are ends


def test_exploit_takes_those_above_the_descending_cutoff() -> None:
    sel = oort(3)  # n = 3; every end explored -> explore 0, exploit 3
    pool = {
        "a": End("a", explored(100)),
        "b": End("b", explored(98)),
        "c": End("c", explored(97)),
        "d": End("d", explored(50)),
        "e": End("e", explored(1)),
    }
    picked = sel.select(pool, {"round": 5})
    # cutoff = 0.95 * third-largest utility, which only a, b, c reach
    assert sorted(picked) == ["a", "b", "c"]
    assert sel.epsilon == pytest.approx(0.9 * 0.98)
    assert sel.last_picked == {"a": 5, "b": 5, "c": 5}


def test_exploit_samples_among_candidates_proportionally() -> None:
    pool = {
        "a": End("a", explored(100)),
        "b": End("b", explored(99)),
        "c": End("c", explored(98)),
        "d": End("d", explored(1)),
    }
    counts = dict.fromkeys(pool, 0)
    for seed in range(30):
        sel = oort(1, seed)  # n = 1, one exploit slot; a, b, c all above 0.95 * 100
        (end,) = sel.select(pool, {"round": 2})
        counts[end] += 1
    assert counts["d"] == 0 and sum(counts[e] > 0 for e in "abc") >= 2


def test_exploration_takes_unexplored_ends_and_backfills() -> None:
    sel = oort(10)  # n = 13
    pool = {f"x{i}": End(f"x{i}", explored(10.0 + i)) for i in range(5)}
    pool |= {f"u{i}": End(f"u{i}") for i in range(20)}
    picked = sel.select(pool, {"round": 2})
    # explore = min(int(13*0.9) + 1, 20, 13) = 12 unexplored, exploit 1 (the best one, x4)
    assert len(picked) == 13 and len(set(picked)) == 13
    assert [p for p in picked if p.startswith("x")] == ["x4"]
    few = oort(3)  # n = 3, only one unexplored: explore 1, exploit 2 of 5
    small = {f"x{i}": End(f"x{i}", explored(1.0)) for i in range(5)} | {"u": End("u")}
    got = few.select(small, {"round": 2})
    assert len(got) == 3 and "u" in got


def test_pacer_relaxes_threshold_when_exploited_utility_falls() -> None:
    sel = oort(2)

    def pool_for(r: int) -> dict[str, End]:  # utilities fall round after round
        return {e: End(e, explored(1000.0 / r, 1.0)) for e in "abcdef"}

    for r in range(2, 41):  # 39 exploiting rounds: not yet 40 of history
        sel.select(pool_for(r), {"round": r})
    assert sel.threshold == 30.0
    sel.select(pool_for(41), {"round": 41})
    assert sel.threshold == 35.0
    assert sel.epsilon == pytest.approx(max(0.9 * 0.98**40, 0.2))
