"""Median, trimmed mean and (multi-)Krum against hand-worked numbers; they buffer by design."""

from __future__ import annotations

import numpy as np

from flame_sdk.optimizers import Weights, create_optimizer


def aggregate(sort: str, kwargs: dict[str, float], base: Weights, deltas: list[Weights]) -> Weights:
    agg = create_optimizer(sort, kwargs).begin(base, 0)
    for delta in deltas:
        agg.add(delta, 1000, 0)
    out = agg.result()
    assert out is not None
    return out


def col(*values: float) -> list[Weights]:
    return [{"a": np.array([x], np.float32)} for x in values]


def test_median_coordinate_wise_odd_and_even() -> None:
    base = {"a": np.array([1.0, 1.0], np.float32)}
    deltas = [{"a": np.array(d, np.float32)} for d in ([1, 10], [2, -5], [100, 0])]
    out = aggregate("median", {}, base, deltas)
    assert out["a"].tolist() == [3.0, 1.0] and out["a"].dtype == np.float32
    assert aggregate("median", {}, {"a": np.zeros(1, np.float32)}, col(1, 2, 3, 100))["a"] == 2.5


def test_trimmed_mean_drops_beta_k_each_side() -> None:
    base = {"a": np.zeros(2), "n": np.array(0)}
    deltas = [
        {"a": np.array([1.0, -50.0]), "n": np.array(1)},
        {"a": np.array([2.0, 0.0]), "n": np.array(2)},
        {"a": np.array([3.0, 1.0]), "n": np.array(2)},
        {"a": np.array([100.0, 2.0]), "n": np.array(9)},
    ]
    out = aggregate("trimmedmean", {"beta": 0.25}, base, deltas)  # cut 1 of 4 per side
    assert out["a"].tolist() == [2.5, 0.5]
    assert out["n"].tolist() == 2  # mean(2, 2), integer dtype kept
    plain = aggregate("trimmedmean", {"beta": 0.2}, base, deltas)  # int(0.8) = 0: plain mean
    assert plain["a"].tolist() == [26.5, -11.75]


def test_krum_and_multi_krum() -> None:
    zero = {"a": np.zeros(1, np.float32)}
    # f = 0: score = two nearest squared distances.
    # 0: 1+9 = 10; 1: 1+4 = 5; 3: 4+9 = 13; 10: 49+81 = 130
    assert aggregate("krum", {"f": 0}, zero, col(0, 1, 3, 10))["a"].tolist() == [1.0]
    assert aggregate("krum", {"f": 0, "m": 2}, zero, col(0, 1, 3, 10))["a"].tolist() == [0.5]
    # one update: taken as is
    assert aggregate("krum", {"f": 3}, zero, col(7))["a"].tolist() == [7.0]


def test_krum_distance_spans_every_array() -> None:
    zero = {"a": np.zeros(1), "b": np.zeros(1)}
    deltas = [
        {"a": np.array([0.0]), "b": np.array([0.0])},
        {"a": np.array([0.0]), "b": np.array([3.0])},
        {"a": np.array([1.0]), "b": np.array([0.0])},
    ]
    # squared distances: 0-1: 9, 0-2: 1, 1-2: 10; f=0 -> 1 neighbour: scores 1, 9, 1 -> first
    out = aggregate("krum", {"f": 0}, zero, deltas)
    assert out["a"].tolist() == [0.0] and out["b"].tolist() == [0.0]
