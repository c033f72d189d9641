"""The streaming property: an aggregation holds O(1) arrays however many updates it folds."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from flame_sdk.optimizers import CONTROL, Aggregation, create_optimizer

STREAMING = [
    ("fedavg", {}),
    ("fedadam", {}),
    ("fedyogi", {}),
    ("fedadagrad", {}),
    ("fedprox", {"mu": 0.1}),
    ("feddyn", {"alpha": 0.1}),
    ("scaffold", {"k": 1}),
    ("fedbuff", {}),
]
BUFFERING = [("median", {}), ("trimmedmean", {"beta": 0.1}), ("krum", {"f": 1})]


def arrays_held(obj: Any, seen: set[int] | None = None) -> int:
    """Count distinct numpy arrays reachable through the SDK's own objects, dicts and lists."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return 1
    if isinstance(obj, dict):
        return sum(arrays_held(x, seen) for x in obj.values())
    if isinstance(obj, list | tuple):
        return sum(arrays_held(x, seen) for x in obj)
    if type(obj).__module__.startswith("flame_sdk") and hasattr(obj, "__dict__"):
        return arrays_held(vars(obj), seen)
    return 0


def feed(agg: Aggregation, sort: str, count: int) -> None:
    for i in range(count):
        delta = {"w": np.full(4, float(i)), "b": np.ones(2)}
        extras = {CONTROL: {"w": np.ones(4), "b": np.ones(2)}} if sort == "scaffold" else None
        agg.add(delta, 1, 0, extras=extras)


@pytest.mark.parametrize(("sort", "kwargs"), STREAMING)
def test_streaming_aggregations_hold_a_constant_number_of_arrays(
    sort: str, kwargs: dict[str, float]
) -> None:
    agg = create_optimizer(sort, kwargs).begin({"w": np.zeros(4), "b": np.zeros(2)}, 0)
    feed(agg, sort, 3)
    held = arrays_held(agg)
    feed(agg, sort, 30)
    assert arrays_held(agg) == held
    assert agg.count == 33 and agg.result() is not None


@pytest.mark.parametrize(("sort", "kwargs"), BUFFERING)
def test_robust_aggregations_buffer_every_update(sort: str, kwargs: dict[str, float]) -> None:
    agg = create_optimizer(sort, kwargs).begin({"w": np.zeros(4), "b": np.zeros(2)}, 0)
    feed(agg, sort, 3)
    held = arrays_held(agg)
    feed(agg, sort, 30)
    assert arrays_held(agg) == held + 30 * 2


def test_fedavg_memory_stays_one_accumulator_for_many_updates() -> None:
    size = 250_000  # one float32 update = 1 MB, its float32 accumulator = 1 MB
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        agg = create_optimizer("fedavg", {}).begin({"w": np.zeros(size, np.float32)}, 0)
        for i in range(40):
            agg.add({"w": np.full(size, i, np.float32)}, 1, 0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4_000_000  # 40 kept copies would be 40 MB
    out = agg.result()
    assert out is not None and float(out["w"][0]) == pytest.approx(19.5)
