"""FedDyn and SCAFFOLD: server math across rounds and the client terms, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from flame_sdk.optimizers import CONTROL, ScaffoldTerm, create_optimizer
from flame_sdk.optimizers.feddyn import FedDyn
from flame_sdk.optimizers.scaffold import Scaffold


def v(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_feddyn_coefficients_and_cloud_model_over_two_rounds() -> None:
    opt = create_optimizer("feddyn", {"alpha": 0.1})
    assert isinstance(opt, FedDyn)
    # N = 8, M = 4: alpha_i = alpha / ((n_i/N)*M) = 0.1*8 / (4*n_i)
    alphas = opt.client_coefficients({"a": 1, "b": 1, "c": 2, "d": 4})
    assert alphas == pytest.approx({"a": 0.2, "b": 0.2, "c": 0.1, "d": 0.05})

    agg = opt.begin({"x": v(0.0), "n": np.array(3)}, 1)
    agg.add({"x": v(1.0), "n": np.array(1)}, 10, 1)  # example counts do not weigh
    agg.add({"x": v(3.0), "n": np.array(2)}, 1, 1)
    cloud = agg.result()
    assert cloud is not None and opt.last_average is not None
    # theta = 0 + (1+3)/2 = 2; H = 4; cloud = 2 + 4/4 = 3; integer arrays: plain mean 3 + rint(1.5)
    assert opt.last_average["x"].tolist() == [2.0]
    assert cloud["x"].tolist() == [3.0] and cloud["n"].tolist() == 5

    agg = opt.begin(cloud, 2)
    agg.add({"x": v(1.0), "n": np.array(0)}, 1, 2)
    cloud = agg.result()
    assert cloud is not None and opt.last_average is not None
    # theta = 3 + 1 = 4; H = 5; cloud = 4 + 5/4
    assert opt.last_average["x"].tolist() == [4.0]
    assert cloud["x"].tolist() == [5.25]


def test_feddyn_population_defaults_to_the_round_participants() -> None:
    opt = create_optimizer("feddyn", {"alpha": 1.0})
    agg = opt.begin({"x": v(0.0)}, 1)
    agg.add({"x": v(2.0)}, 1, 1)
    agg.add({"x": v(4.0)}, 1, 1)
    cloud = agg.result()
    assert cloud is not None and cloud["x"].tolist() == [3.0 + 6.0 / 2]
    with pytest.raises(ValueError, match=r"\['b'\] reported no examples"):
        opt.client_coefficients({"a": 2, "b": 0})


def test_dyn_term_value_gradient_and_history() -> None:
    term = create_optimizer("feddyn", {"alpha": 0.1}).regularizer
    term.receive(0.5)
    assert term.after_training({"p": v(0.0)}, {"p": v(2.0)}, lr=0.1) == {}  # g = [2]
    w, w_t = {"p": v(1.0)}, {"p": v(3.0)}
    # 0.5 * (<w, g> + 0.5*||w - w_t||^2) = 0.5 * (2 + 2)
    assert term.term(w, w_t) == pytest.approx(2.0)
    # 0.5 * (g + w - w_t) = 0.5 * (2 + 1 - 3)
    np.testing.assert_allclose(term.gradient(w, w_t)["p"], [0.0])
    with pytest.raises(ValueError, match="alpha"):
        term.receive(0.0)


def test_scaffold_server_round_and_refusal_without_control() -> None:
    opt = create_optimizer("scaffold", {"k": 2})
    assert isinstance(opt, Scaffold)
    assert opt.client_coefficients({"a": 1, "b": 3}) == pytest.approx({"a": 0.5, "b": 1.5})
    agg = opt.begin({"x": v(1.0), "steps": np.array(4)}, 1)
    control = opt.server_state()[CONTROL]
    assert set(control) == {"x"} and control["x"].tolist() == [0.0]

    with pytest.raises(ValueError, match="control"):
        agg.add({"x": v(0.2), "steps": np.array(1)}, 1, 1)
    with pytest.raises(ValueError, match="extras\\['control'\\]"):
        agg.add({"x": v(0.2), "steps": np.array(1)}, 1, 1, extras={CONTROL: {"y": v(1.0)}})
    assert agg.count == 0

    agg.add({"x": v(0.2), "steps": np.array(1)}, 1, 1, extras={CONTROL: {"x": v(0.4)}})
    agg.add({"x": v(0.6), "steps": np.array(1)}, 9, 1, extras={CONTROL: {"x": v(0.8)}})
    out = agg.result()
    assert out is not None
    # x = 1 + (0.2 + 0.6)/2; c = 0 + (0.4 + 0.8)/M with M = 2
    np.testing.assert_allclose(out["x"], [1.4])
    assert out["steps"].tolist() == 5
    np.testing.assert_allclose(opt.server_state()[CONTROL]["x"], [0.6])


def test_scaffold_clients_and_server_keep_c_the_weighted_mean_of_local_controls() -> None:
    server = create_optimizer("scaffold", {"k": 2})
    omegas = server.client_coefficients({"a": 1, "b": 3})
    clients = {end: create_optimizer("scaffold", {"k": 2}).regularizer for end in omegas}
    x = {"p": v(1.0)}
    agg = server.begin(x, 1)
    for end, y in (("a", v(-1.0)), ("b", v(0.0))):
        term = clients[end]
        term.receive(omegas[end], server.server_state())
        np.testing.assert_allclose(term.gradient(x, x)["p"], [0.0])  # c - c_i = 0
        extras = term.after_training(x, {"p": y}, lr=0.5)
        agg.add({"p": y - x["p"]}, 1, 1, extras=extras)
    # c_a = 0 - 0 + (1 - (-1))/(2*0.5) = 2 -> delta 0.5*2 = 1; c_b = 1 -> delta 1.5*1 = 1.5
    term_a = clients["a"]
    assert isinstance(term_a, ScaffoldTerm) and term_a.local["p"].tolist() == [2.0]
    assert agg.result() is not None
    c = server.server_state()[CONTROL]["p"]
    np.testing.assert_allclose(c, [(0.5 * 2 + 1.5 * 1) / 2])  # = 1.25
    # next round the correction of client a is c - c_a = 1.25 - 2, and its term is <w, c - c_a>
    term_a.receive(omegas["a"], server.server_state())
    np.testing.assert_allclose(term_a.gradient({"p": v(3.0)}, x)["p"], [-0.75])
    assert term_a.term({"p": v(3.0)}, x) == pytest.approx(-2.25)


def test_scaffold_upload_is_the_change_of_the_weighted_control_when_omega_arrives_late() -> None:
    term = create_optimizer("scaffold", {"k": 1}).regularizer
    assert isinstance(term, ScaffoldTerm)
    x = {"p": v(0.0)}
    first = term.after_training(x, {"p": v(-2.0)}, lr=1.0)  # no coefficient yet: weight 1
    np.testing.assert_allclose(first[CONTROL]["p"], [2.0])  # c_i = 2
    term.receive(0.5, {CONTROL: {"p": v(1.0)}})
    second = term.after_training(x, {"p": v(-1.0)}, lr=1.0)
    # c_i+ = 2 - 1 + 1 = 2; upload 0.5*2 - 1*2, so the server holds 0.5*c_i from now on
    assert term.local["p"].tolist() == [2.0]
    np.testing.assert_allclose(second[CONTROL]["p"], [-1.0])
    third = term.after_training(x, {"p": v(-1.0)}, lr=1.0)
    np.testing.assert_allclose(third[CONTROL]["p"], [0.0])  # 0.5*2 - 0.5*2
