"""Privacy: identity, and DP clipping plus Gaussian noise on float arrays (numpy and torch)."""

from __future__ import annotations

import numpy as np
import pytest

from flame_sdk.privacy import create_privacy


def delta() -> dict[str, np.ndarray]:
    # global L2 norm over the float arrays: sqrt(3² + 0² + 4²) = 5
    return {
        "a": np.array([3.0, 0.0], np.float32),
        "b": np.array([[4.0]], np.float64),
        "steps": np.array([7], np.int64),
    }


def test_default_is_identity() -> None:
    d = delta()
    out = create_privacy("", None).apply(d)
    assert out is not d and all(out[k] is d[k] for k in d)


def test_dp_clips_global_norm_and_keeps_dtypes() -> None:
    d = delta()
    out = create_privacy("dp", {"clip_threshold": 1.0, "noise_factor": 0.0}).apply(d)
    # scale C/norm = 1/5
    np.testing.assert_allclose(out["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [[0.8]])
    assert out["a"].dtype == np.float32 and out["b"].dtype == np.float64
    assert out["steps"] is d["steps"]
    assert d["a"].tolist() == [3.0, 0.0]  # input untouched
    within = create_privacy("dp", {"clip_threshold": 10.0, "noise_factor": 0.0}).apply(d)
    assert within["a"].tolist() == [3.0, 0.0] and within["b"].tolist() == [[4.0]]


def test_dp_noise_has_the_configured_scale_and_is_seeded() -> None:
    big = {"w": np.zeros(200_000, np.float32), "n": np.array([1], np.int32)}
    kwargs = {"clip_threshold": 1.0, "noise_factor": 0.5, "seed": 11}
    out = create_privacy("dp", kwargs).apply(big)
    assert abs(float(out["w"].std()) - 0.5) < 0.01 and abs(float(out["w"].mean())) < 0.01
    assert out["n"].tolist() == [1] and out["w"].dtype == np.float32
    again = create_privacy("dp", kwargs).apply(big)
    np.testing.assert_array_equal(again["w"], out["w"])
    fresh = create_privacy("dp", kwargs)
    first, second = fresh.apply(big)["w"], fresh.apply(big)["w"]
    assert not np.array_equal(first, second)  # successive updates get new noise


def test_dp_torch_variant_same_math() -> None:
    torch = pytest.importorskip("torch")
    state = {
        "a": torch.tensor([3.0, 0.0]),
        "b": torch.tensor([[4.0]], dtype=torch.float64),
        "steps": torch.tensor([7]),
    }
    out = create_privacy("dp", {"clip_threshold": 1.0, "noise_factor": 0.0}).apply_torch(state)
    assert torch.allclose(out["a"], torch.tensor([0.6, 0.0]))
    assert out["a"].dtype == torch.float32 and out["b"].dtype == torch.float64
    assert out["b"].item() == pytest.approx(0.8)
    assert out["steps"] is state["steps"]
    kwargs = {"clip_threshold": 100.0, "noise_factor": 0.5, "seed": 3}
    big = {"w": torch.zeros(200_000)}
    noisy = create_privacy("dp", kwargs).apply_torch(big)["w"]
    assert abs(float(noisy.std()) - 0.5) < 0.01
    assert torch.equal(noisy, create_privacy("dp", kwargs).apply_torch(big)["w"])
    assert create_privacy("", {}).apply_torch(state)["a"] is state["a"]


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="unknown privacy sort 'ldp'"):
        create_privacy("ldp", {})
    with pytest.raises(ValueError, match=r"'dp'.*clip_threshold"):
        create_privacy("dp", {"clip_threshold": 0, "noise_factor": 1.0})
    with pytest.raises(ValueError, match=r"'dp'.*noise_factor"):
        create_privacy("dp", {"clip_threshold": 1.0})
