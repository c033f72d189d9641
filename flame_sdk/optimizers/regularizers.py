"""Client-side loss terms paired with an optimizer (`Optimizer.regularizer`), in numpy.

A trainer uses its regularizer in three steps each round:
1. `receive(coefficient, state)` with what the server sent for this client
   (`Optimizer.client_coefficients(...)[end]` and `Optimizer.server_state()`);
2. while training, add `term(w, w_t)` to the loss (or `gradient(w, w_t)` to the data gradient),
   where `w` are the local trainable parameters (float arrays by name) and `w_t` the global
   weights the round started from (a superset of `w`'s names);
3. `after_training(w_t, w, lr)` returns the extras to upload beside the delta
   (`Aggregation.add(..., extras=...)`) and updates the client's own state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from flame_sdk.weights import Weights, is_float

Arrays = Mapping[str, np.ndarray]
CONTROL = "control"  # SCAFFOLD's control variate (server state) / control delta (client extras)


def _pairs(w: Arrays, w_t: Arrays) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, w[name], w_t[name]) for the float arrays of `w`; every one must be in `w_t`."""
    out = []
    for name, value in w.items():
        if not is_float(value):
            continue
        if name not in w_t or np.shape(w_t[name]) != value.shape:
            raise ValueError(f"w_t has no array {name!r} of shape {value.shape}")
        out.append((name, value, w_t[name]))
    return out


def _get(state: Arrays, name: str, like: np.ndarray) -> np.ndarray:
    return state[name] if name in state else np.zeros(like.shape)


class Regularizer:
    """The zero term (FedAvg, FedOpt, FedBuff, the robust rules); base of the others."""

    sort: ClassVar[str] = "none"

    def receive(
        self, coefficient: float | None = None, state: Mapping[str, Arrays] | None = None
    ) -> None:
        """Install this round's per-client coefficient and server state (ignored here)."""

    def term(self, w: Arrays, w_t: Arrays) -> float:
        """The value added to the local loss."""
        _pairs(w, w_t)
        return 0.0

    def gradient(self, w: Arrays, w_t: Arrays) -> Weights:
        """d term / d w for every float array of `w`."""
        return {name: np.zeros(a.shape) for name, a, _ in _pairs(w, w_t)}

    def after_training(self, w_t: Arrays, w: Arrays, lr: float) -> dict[str, Weights]:
        """Update client state after local training from `w_t` to `w`; return upload extras."""
        return {}


class ProxTerm(Regularizer):
    """FedProx: `(mu/2)·‖w - w_t‖²`, gradient `mu·(w - w_t)`."""

    sort: ClassVar[str] = "fedprox"

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def term(self, w: Arrays, w_t: Arrays) -> float:
        return 0.5 * self.mu * sum(float(np.sum((a - b) ** 2)) for _, a, b in _pairs(w, w_t))

    def gradient(self, w: Arrays, w_t: Arrays) -> Weights:
        return {name: self.mu * (a - b) for name, a, b in _pairs(w, w_t)}


class DynTerm(Regularizer):
    """FedDyn: `alpha_i·⟨w, g⟩ + (alpha_i/2)·‖w - w_t‖²`, gradient `alpha_i·(g + w - w_t)`.

    `g` sums this client's uploaded deltas over the rounds (it is minus the FedDyn gradient state
    divided by alpha). The reference writes the same objective as
    `alpha_i·⟨w, g - w_t⟩ + (alpha_i/2)·‖w‖²`, which differs by the constant `(alpha_i/2)·‖w_t‖²`.
    `alpha_i` starts at the optimizer's alpha; `receive(coefficient)` installs the server's value.
    """

    sort: ClassVar[str] = "feddyn"

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.history: Weights = {}

    def receive(
        self, coefficient: float | None = None, state: Mapping[str, Arrays] | None = None
    ) -> None:
        if coefficient is not None:
            if not coefficient > 0:
                raise ValueError(f"feddyn alpha must be > 0, got {coefficient}")
            self.alpha = coefficient

    def term(self, w: Arrays, w_t: Arrays) -> float:
        total = 0.0
        for name, a, b in _pairs(w, w_t):
            total += float(np.sum(a * _get(self.history, name, a))) + 0.5 * float(
                np.sum((a - b) ** 2)
            )
        return self.alpha * total

    def gradient(self, w: Arrays, w_t: Arrays) -> Weights:
        return {
            name: self.alpha * (_get(self.history, name, a) + a - b)
            for name, a, b in _pairs(w, w_t)
        }

    def after_training(self, w_t: Arrays, w: Arrays, lr: float) -> dict[str, Weights]:
        fresh = {name: _get(self.history, name, a) + (a - b) for name, a, b in _pairs(w, w_t)}
        self.history.update(fresh)
        return {}


class ScaffoldTerm(Regularizer):
    """SCAFFOLD: linear term `⟨w, c - c_i⟩`, i.e. the gradient correction `c - c_i`.

    `receive(omega_i, {"control": c})` installs the server's control `c` and this client's weight
    `omega_i = (n_i/N)·M`. Train exactly `k` local steps with learning rate `lr`; then
    `after_training(x, y, lr)` sets `c_i⁺ = c_i - c + (x - y)/(k·lr)` and returns
    `{"control": omega_i·c_i⁺ - omega_i⁻·c_i}`, the change of the weighted control, where
    `omega_i⁻` is the weight of the previous upload (1 until a coefficient arrived). The weight
    makes the server's `c` the data-weighted mean of the clients' controls, also when `omega_i`
    first arrives after round 1 or changes; the correction is `c - c_i` as in the paper (the
    reference divided `c` by `omega_i` there, which skews it when data sizes differ). `w_t` is not
    used by the term.
    """

    sort: ClassVar[str] = "scaffold"

    def __init__(self, k: int) -> None:
        self.k = k
        self.weight = 1.0
        self.uploaded_weight = 1.0
        self.control: Weights = {}
        self.local: Weights = {}

    def receive(
        self, coefficient: float | None = None, state: Mapping[str, Arrays] | None = None
    ) -> None:
        if coefficient is not None:
            if not coefficient > 0:
                raise ValueError(f"scaffold client weight must be > 0, got {coefficient}")
            self.weight = coefficient
        if state and CONTROL in state:
            self.control = {n: np.asarray(a, dtype=np.float64) for n, a in state[CONTROL].items()}

    def _correction(self, name: str, like: np.ndarray) -> np.ndarray:
        return _get(self.control, name, like) - _get(self.local, name, like)

    def term(self, w: Arrays, w_t: Arrays) -> float:
        return sum(
            float(np.sum(a * self._correction(name, a))) for name, a in w.items() if is_float(a)
        )

    def gradient(self, w: Arrays, w_t: Arrays) -> Weights:
        return {name: self._correction(name, a) for name, a in w.items() if is_float(a)}

    def after_training(self, w_t: Arrays, w: Arrays, lr: float) -> dict[str, Weights]:
        if not lr > 0:
            raise ValueError(f"scaffold learning rate must be > 0, got {lr}")
        fresh = {
            name: _get(self.local, name, y) - _get(self.control, name, y) + (x - y) / (self.k * lr)
            for name, y, x in _pairs(w, w_t)
        }
        delta = {
            name: self.weight * c - self.uploaded_weight * _get(self.local, name, c)
            for name, c in fresh.items()
        }
        self.local.update(fresh)
        self.uploaded_weight = self.weight
        return {CONTROL: delta}
