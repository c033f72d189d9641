"""Framework-agnostic weights (named numpy arrays) and the model adapters that read/write them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

Weights = dict[str, np.ndarray]

FRAMEWORKS = ("numpy", "torch")


class ModelAdapter(Protocol):
    """Moves weights between a user's model object and `Weights`."""

    def get_weights(self, model: Any) -> Weights: ...

    def set_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None: ...


class NumpyAdapter:
    """A model that is a mutable mapping of arrays, or has `get_weights()`/`set_weights()`."""

    def get_weights(self, model: Any) -> Weights:
        if hasattr(model, "get_weights"):
            return {k: np.array(v, copy=True) for k, v in model.get_weights().items()}
        return {k: np.array(v, copy=True) for k, v in model.items()}

    def set_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        if hasattr(model, "set_weights"):
            model.set_weights({k: np.array(v, copy=True) for k, v in weights.items()})
            return
        check_same_names(model.keys(), weights.keys())
        for name, value in weights.items():
            model[name] = np.array(value, copy=True)


def adapter_for(framework: str) -> ModelAdapter:
    """The adapter of an explicitly named framework; torch is imported only when asked for."""
    if framework == "numpy":
        return NumpyAdapter()
    if framework == "torch":
        module = importlib.import_module("flame_sdk.torch_weights")
        adapter: ModelAdapter = module.TorchAdapter()
        return adapter
    raise ValueError(f"unknown framework '{framework}' (expected one of {', '.join(FRAMEWORKS)})")


def check_same_names(expected: Any, got: Any) -> None:
    """Raise a ValueError naming the differences between two sets of weight names."""
    exp, have = set(expected), set(got)
    if exp != have:
        missing, extra = sorted(exp - have), sorted(have - exp)
        raise ValueError(f"weights do not match the model: missing {missing}, unexpected {extra}")


def subtract(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *, in_place: bool = False
) -> Weights:
    """`a - b` by name (a delta); names must match. `in_place` writes the result into `a`'s
    arrays (where their dtype can hold it) instead of allocating new ones."""
    check_same_names(a.keys(), b.keys())
    if not in_place:
        return {k: np.subtract(a[k], b[k]) for k in a}
    return {k: _subtract_into(a[k], b[k]) for k in a}


def _subtract_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if (
        a.flags.writeable
        and np.result_type(a, b) == a.dtype
        and a.shape == np.broadcast(a, b).shape
    ):
        return np.subtract(a, b, out=a)
    return np.subtract(a, b)


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> Weights:
    """`a + b` by name; names must match."""
    check_same_names(a.keys(), b.keys())
    return {k: np.add(a[k], b[k]).astype(a[k].dtype, copy=False) for k in a}


def nbytes(weights: Mapping[str, np.ndarray]) -> int:
    return sum(int(v.nbytes) for v in weights.values())
