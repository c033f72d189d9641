"""flame_sdk.weights: the one module of Weights helpers (checks, arithmetic, dtypes, digest)."""

from __future__ import annotations

import numpy as np
import pytest

from flame_sdk.weights import (
    add,
    check_like,
    check_same_names,
    divided,
    scaled,
    sum_dtype,
    weights_digest,
)


def test_add_keeps_dtypes_and_zero_d_arrays() -> None:
    a = {"w": np.ones(3, np.float32), "step": np.array(2, np.int64)}
    b = {"w": np.full(3, 0.5, np.float32), "step": np.array(1, np.int64)}
    out = add(a, b)
    assert out["w"].dtype == np.float32 and np.allclose(out["w"], 1.5)
    assert isinstance(out["step"], np.ndarray) and out["step"].shape == () and out["step"] == 3


def test_scaled_then_divided_is_the_weighted_mean_in_the_model_dtypes() -> None:
    like = {"w": np.array([1.0, 3.0], np.float16), "n": np.array([1, 2], np.int32)}
    other = {"w": np.array([3.0, 5.0], np.float16), "n": np.array([2, 4], np.int32)}
    acc = add(scaled(like, ["w", "n"], 1), scaled(other, ["w", "n"], 3))
    assert acc["w"].dtype == sum_dtype(np.dtype(np.float16)) == np.float64
    mean = divided(acc, 4, like)
    assert mean["w"].dtype == np.float16 and np.allclose(mean["w"], [2.5, 4.5])
    assert mean["n"].dtype == np.int32 and list(mean["n"]) == [2, 4]  # 1.75, 3.5 rounded


def test_name_and_shape_checks_name_what_differs() -> None:
    with pytest.raises(ValueError, match=r"weights do not match the model: missing \['b'\]"):
        check_same_names(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"control does not match the model: .*unexpected \['c'\]"):
        check_like({"a": np.zeros(2)}, {"a": np.zeros(2), "c": np.zeros(1)}, "control")
    with pytest.raises(ValueError, match=r"control\['a'\] has shape \(3,\), expected \(2,\)"):
        check_like({"a": np.zeros(2)}, {"a": np.zeros(3)}, "control")


def test_digest_depends_on_content_not_on_insertion_order() -> None:
    a, b = np.arange(4, dtype=np.float32), np.ones(2, np.int64)
    assert weights_digest({"a": a, "b": b}) == weights_digest({"b": b, "a": a})
    assert weights_digest({"a": a, "b": b}) != weights_digest({"a": a, "b": b * 2})
    assert weights_digest({"a": a}) != weights_digest({"a": a.astype(np.float64)})
    assert len(weights_digest({"a": a})) == 16
