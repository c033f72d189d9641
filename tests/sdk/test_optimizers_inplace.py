"""In-place folding: scaled adds without model-size temporaries, dtypes kept, results by hand."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pytest

from flame_sdk.optimizers import CONTROL, create_optimizer, kernels
from flame_sdk.optimizers.kernels import ScaledAdd

SIZE = 2_000_000  # 8 MB as float32


@pytest.fixture(params=["blas", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test through BLAS axpy and through the chunked numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(kernels, "_axpy", lambda dtype: None)
    yield request.param


def peak_growth(action: Callable[[], object]) -> int:
    """Peak bytes numpy allocated (traced) while running `action`."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_scaled_add_matches_numpy_for_any_layout(path: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    acc = rng.standard_normal((300, 700)).astype(np.promote_types(dtype, np.float32))
    expected = acc.astype(np.float64)
    add = ScaledAdd()
    same: np.ndarray = rng.standard_normal((300, 700)).astype(dtype)
    transposed = rng.standard_normal((700, 300)).T  # float64, not contiguous
    for x, a in ((same, 2.5), (transposed, -0.75), (np.arange(300 * 700).reshape(300, 700), 1)):
        add(acc, x, a)
        expected += a * x.astype(np.float64)
    np.testing.assert_allclose(acc, expected, rtol=1e-5, atol=1e-3)


def test_scaled_add_refuses_a_non_contiguous_accumulator() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        ScaledAdd()(np.zeros((4, 4)).T, np.ones((4, 4)), 2.0)


def test_fedavg_folds_and_finishes_float32_without_model_size_temporaries(path: str) -> None:
    base = {"w": np.ones(SIZE, np.float32)}
    agg = create_optimizer("fedavg", {}).begin(base, 0)
    deltas = [np.full(SIZE, v, np.float32) for v in (1.0, -2.0, 4.0)]
    agg.add({"w": deltas[0]}, 1, 0)  # touches the accumulator
    for delta, n in zip(deltas[1:], (2, 5), strict=True):
        assert peak_growth(partial(agg.add, {"w": delta}, n, 0)) < SIZE  # < 1/4 model
    out: dict[str, np.ndarray] = {}
    assert peak_growth(lambda: out.update(agg.result() or {})) < SIZE
    # 1 + (1*1 + 2*(-2) + 5*4) / 8 = 1 + 17/8
    assert out["w"].dtype == np.float32
    np.testing.assert_allclose(out["w"][[0, -1]], [3.125, 3.125], rtol=1e-6)
    assert base["w"][0] == 1.0 and deltas[1][0] == -2.0  # inputs untouched


def test_float64_update_into_float32_model_and_float16_model_keep_the_model_dtype(
    path: str,
) -> None:
    for dtype in (np.float32, np.float16):
        agg = create_optimizer("fedavg", {}).begin({"w": np.array([1.0, 2.0], dtype)}, 0)
        agg.add({"w": np.array([0.5, -1.0])}, 3, 0)
        agg.add({"w": np.array([-0.5, 3.0], np.float32)}, 1, 0)
        out = agg.result()
        assert out is not None and out["w"].dtype == dtype
        # [1, 2] + ([1.5, -3] + [-0.5, 3]) / 4
        np.testing.assert_allclose(out["w"], [1.25, 2.0], rtol=1e-3)


def test_non_numeric_delta_is_refused_before_anything_is_folded() -> None:
    agg = create_optimizer("fedavg", {}).begin({"a": np.zeros(2), "b": np.zeros(2)}, 0)
    with pytest.raises(ValueError, match=r"delta\['b'\] has dtype complex128"):
        agg.add({"a": np.ones(2), "b": np.ones(2, complex)}, 1, 0)
    with pytest.raises(ValueError, match=r"delta\['a'\] has dtype <U1"):
        agg.add({"a": np.array(["x", "y"]), "b": np.ones(2)}, 1, 0)
    assert agg.count == 0 and agg.result() is None


def test_fedadam_on_float32_matches_float64_and_keeps_float32() -> None:
    outs: dict[type, np.ndarray] = {}
    for dtype in (np.float32, np.float64):
        opt = create_optimizer("fedadam", {"eta": 0.1})
        x = {"x": np.array([1.0, -2.0], dtype)}
        for d in ([0.5, 0.25], [-0.1, 0.3], [0.2, 0.2]):
            agg = opt.begin(x, 0)
            agg.add({"x": np.array(d, dtype)}, 2, 0)
            result = agg.result()
            assert result is not None and result["x"].dtype == dtype
            x = result
        outs[dtype] = x["x"].astype(np.float64)
    np.testing.assert_allclose(outs[np.float32], outs[np.float64], rtol=1e-6)


def test_scaffold_control_sent_earlier_is_not_changed_by_the_next_round() -> None:
    opt = create_optimizer("scaffold", {"k": 1})
    agg = opt.begin({"x": np.zeros(2, np.float32)}, 0)
    sent = opt.server_state()[CONTROL]["x"]
    agg.add({"x": np.ones(2, np.float32)}, 1, 0, extras={CONTROL: {"x": np.full(2, 4.0)}})
    assert agg.result() is not None
    assert sent.tolist() == [0.0, 0.0]
    assert opt.server_state()[CONTROL]["x"].tolist() == [4.0, 4.0]  # M = 1 participant


def test_small_arrays_skip_the_blas_thread_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_axpy(dtype: np.dtype) -> Callable[..., None]:
        def axpy(x: np.ndarray, y: np.ndarray, a: float) -> None:
            calls.append(y.size)
            y += a * x

        return axpy

    monkeypatch.setattr(kernels, "_axpy", fake_axpy)
    add = ScaledAdd()
    small = np.zeros(kernels.BLAS_MIN - 1, np.float32)
    large = np.zeros(kernels.BLAS_MIN, np.float32)
    add(small, np.ones_like(small), 0.5)
    add(large, np.ones_like(large), 0.5)
    assert calls == [kernels.BLAS_MIN]  # only the large one went to BLAS
    assert small[0] == large[0] == 0.5
