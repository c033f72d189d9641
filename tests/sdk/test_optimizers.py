"""Streaming optimizers against hand-worked numbers: FedAvg, FedOpt, FedProx, FedBuff, factory."""

from __future__ import annotations

import numpy as np
import pytest

from flame_sdk.optimizers import CONTROL, SORTS, Optimizer, Weights, create_optimizer


def w(**arrays: list[float] | list[int] | float) -> Weights:
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


def run_round(opt: Optimizer, base: Weights, updates: list[tuple[Weights, int]]) -> Weights:
    agg = opt.begin(base, 1)
    for delta, n in updates:
        agg.add(delta, n, 1)
    out = agg.result()
    assert out is not None
    return out


def test_fedavg_weights_by_examples_and_keeps_dtypes() -> None:
    base = {"w": np.array([1.0, 2.0], np.float32), "steps": np.array(10, np.int64)}
    agg = create_optimizer("fedavg", {}).begin(base, 3)
    agg.add({"w": np.array([1.0, 0.0], np.float32), "steps": np.array(4, np.int64)}, 1, 3)
    agg.add({"w": np.array([-1.0, 4.0], np.float32), "steps": np.array(5, np.int64)}, 3, 3)
    out = agg.result()
    assert out is not None and agg.count == 2
    # w + (1*[1,0] + 3*[-1,4]) / 4 = [1,2] + [-0.5, 3]; steps: 10 + rint((4 + 15)/4 = 4.75) = 15
    np.testing.assert_allclose(out["w"], [0.5, 5.0])
    assert out["w"].dtype == np.float32
    assert out["steps"].dtype == np.int64 and int(out["steps"]) == 15
    assert base["w"].tolist() == [1.0, 2.0]  # base untouched


def test_result_is_none_without_weight_and_final_once_produced() -> None:
    agg = create_optimizer("", None).begin(w(a=[1.0]), 0)  # "" means fedavg
    assert agg.result() is None
    agg.add(w(a=[5.0]), 0, 0)
    assert agg.result() is None  # total weight 0: still open
    agg.add(w(a=[2.0]), 2, 0)
    first = agg.result()
    assert first is not None and first["a"].tolist() == [3.0]
    assert agg.result() is first
    with pytest.raises(RuntimeError):
        agg.add(w(a=[1.0]), 1, 0)


def test_add_rejects_mismatched_delta_without_folding_it() -> None:
    agg = create_optimizer("fedavg", {}).begin(w(a=[0.0, 0.0], b=[0.0]), 0)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        agg.add(w(a=[1.0, 1.0]), 1, 0)
    with pytest.raises(ValueError, match=r"'a'.*shape"):
        agg.add(w(a=[1.0], b=[1.0]), 1, 0)
    with pytest.raises(ValueError, match="num_examples"):
        agg.add(w(a=[1.0, 1.0], b=[1.0]), -1, 0)
    assert agg.count == 0 and agg.result() is None


def test_fedadam_first_round_is_fedavg_then_adaptive_step() -> None:
    opt = create_optimizer("fedadam", {})  # beta_1=0.9, beta_2=0.99, eta=0.01, tau=0.001
    x1 = run_round(opt, w(x=[1.0]), [(w(x=[0.2]), 1), (w(x=[0.4]), 3)])
    # first call x <- x_bar = 1 + (0.2 + 1.2)/4 = 1.35
    np.testing.assert_allclose(x1["x"], [1.35], rtol=1e-6)
    x2 = run_round(opt, x1, [(w(x=[0.1]), 1)])
    # d = 0.1; m = 0.1*0.1 = 0.01; v = 0.01*0.01 = 1e-4; x = 1.35 + 0.01*0.01/(0.01 + 0.001)
    np.testing.assert_allclose(x2["x"], [1.35 + 0.0001 / 0.011], rtol=1e-6)


def test_fedadagrad_accumulates_squares() -> None:
    opt = create_optimizer("fedadagrad", {"beta_1": 0.0, "eta": 0.1, "tau": 0.01})
    x1 = run_round(opt, w(x=[0.0]), [(w(x=[1.0]), 1)])
    assert x1["x"].tolist() == [1.0]
    x2 = run_round(opt, x1, [(w(x=[0.3]), 1)])
    # m = 0.3, v = 0.09 -> 1 + 0.1*0.3/(0.3 + 0.01)
    np.testing.assert_allclose(x2["x"], [1 + 0.03 / 0.31], rtol=1e-6)
    x3 = run_round(opt, x2, [(w(x=[-0.4]), 1)])
    # m = -0.4, v = 0.09 + 0.16 = 0.25 -> x2 + 0.1*(-0.4)/(0.5 + 0.01)
    np.testing.assert_allclose(x3["x"], x2["x"] - 0.04 / 0.51, rtol=1e-6)


def test_fedyogi_second_moment_sign_rule() -> None:
    opt = create_optimizer("fedyogi", {"beta_1": 0.5, "beta_2": 0.9, "eta": 1.0, "tau": 1e-9})
    x = run_round(opt, w(x=[0.0]), [(w(x=[5.0]), 1)])  # first round: x = 5
    x = run_round(opt, x, [(w(x=[2.0]), 1)])
    # m = 0.5*2 = 1; v = 0 - 0.1*4*sign(0 - 4) = 0.4; x = 5 + 1/sqrt(0.4)
    np.testing.assert_allclose(x["x"], [5 + 1 / np.sqrt(0.4)], rtol=1e-6)
    x_prev = x["x"].copy()
    x = run_round(opt, x, [(w(x=[0.1]), 1)])
    # m = 0.5*1 + 0.5*0.1 = 0.55; v = 0.4 - 0.1*0.01*sign(0.4 - 0.01) = 0.399
    np.testing.assert_allclose(x["x"], x_prev + 0.55 / np.sqrt(0.399), rtol=1e-5)


def test_fedopt_integer_arrays_take_the_fedavg_step() -> None:
    opt = create_optimizer("fedadam", {})
    base = {"x": np.array([0.0], np.float32), "n": np.array([7], np.int32)}
    step = {"x": np.array([1.0], np.float32), "n": np.array([3], np.int32)}
    out = run_round(opt, run_round(opt, base, [(step, 1)]), [(step, 1)])
    assert out["n"].dtype == np.int32 and out["n"].tolist() == [13]


def test_fedprox_server_is_fedavg_and_term_is_proximal() -> None:
    opt = create_optimizer("fedprox", {"mu": 0.5})
    out = run_round(opt, w(a=[1.0]), [(w(a=[2.0]), 1), (w(a=[5.0]), 2)])
    np.testing.assert_allclose(out["a"], [1 + 12 / 3])
    term = opt.regularizer
    local, start = w(a=[1.0, 3.0]), w(a=[0.0, 1.0], b=[9.0])
    assert term.term(local, start) == pytest.approx(0.25 * (1 + 4))  # (mu/2)*||w - w_t||^2
    np.testing.assert_allclose(term.gradient(local, start)["a"], [0.5, 1.0])


def test_fedbuff_discounts_stale_updates() -> None:
    agg = create_optimizer("fedbuff", {}).begin(w(a=[1.0, 1.0]), 5)
    agg.add(w(a=[3.0, 0.0]), 100, 5)  # fresh: /sqrt(1)
    agg.add(w(a=[4.0, 8.0]), 1, 2)  # staleness 3: /sqrt(4)
    agg.add(w(a=[1.0, 1.0]), 1, 7)  # newer than the buffer's version: counts as fresh
    out = agg.result()
    assert out is not None
    # S = [3 + 2 + 1, 0 + 4 + 1] = [6, 5]; w + S/3
    np.testing.assert_allclose(out["a"], [3.0, 1 + 5 / 3], rtol=1e-6)


REQUIRED_KWARGS = {
    "fedprox": {"mu": 1.0},
    "feddyn": {"alpha": 1.0},
    "scaffold": {"k": 1},
    "fedgft": {"fair": "SP", "gamma": 1.0},
}


@pytest.mark.parametrize("sort", SORTS)
def test_zero_dimensional_arrays_stay_arrays(sort: str) -> None:
    # e.g. torch BatchNorm's num_batches_tracked; a numpy scalar cannot go on the wire
    opt = create_optimizer(sort, REQUIRED_KWARGS.get(sort, {"f": 0} if sort == "krum" else {}))
    base = {"n": np.array(3), "f": np.array(1.0, np.float32)}
    agg = opt.begin(base, 1)
    for i in range(3):
        delta = {"n": np.array(i), "f": np.array(i, np.float32)}
        agg.add(delta, 1, 1, extras={CONTROL: {"f": np.array(1.0)}})
    out = agg.result()
    assert out is not None
    for name, ref in base.items():
        assert isinstance(out[name], np.ndarray) and out[name].dtype == ref.dtype, name


def test_factory_rejects_unknown_sort_and_bad_kwargs() -> None:
    with pytest.raises(ValueError, match="unknown optimizer sort 'fedsgd'"):
        create_optimizer("fedsgd", {})
    with pytest.raises(ValueError, match=r"'fedprox'.*mu"):
        create_optimizer("fedprox", {})
    with pytest.raises(ValueError, match=r"'fedadam'.*lr"):
        create_optimizer("fedadam", {"lr": 0.1})
    with pytest.raises(ValueError, match=r"'krum'.*f"):
        create_optimizer("krum", {"f": -1})
    with pytest.raises(ValueError, match=r"'trimmedmean'.*beta"):
        create_optimizer("trimmedmean", {"beta": 0.5})
