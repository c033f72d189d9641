"""`Weights` (named numpy arrays): model adapters, checks, arithmetic, dtypes and the digest."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from flame_common.extras import require

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
        require("ml", "framework 'torch'", ["torch"])
        module = importlib.import_module("flame_sdk.torch_weights")
        adapter: ModelAdapter = module.TorchAdapter()
        return adapter
    raise ValueError(f"unknown framework '{framework}' (expected one of {', '.join(FRAMEWORKS)})")


# checks --------------------------------------------------------------------------------------
def _name_mismatch(expected: Any, got: Any) -> str | None:
    """`missing [...], unexpected [...]` when the two sets of names differ, else None."""
    exp, have = set(expected), set(got)
    if exp == have:
        return None
    return f"missing {sorted(exp - have)}, unexpected {sorted(have - exp)}"


def check_same_names(expected: Any, got: Any) -> None:
    """Raise a ValueError naming the differences between two sets of weight names."""
    mismatch = _name_mismatch(expected, got)
    if mismatch is not None:
        raise ValueError(f"weights do not match the model: {mismatch}")


def check_like(base: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], what: str) -> None:
    """Raise ValueError unless `other` has exactly the names and shapes of `base`."""
    mismatch = _name_mismatch(base, other)
    if mismatch is not None:
        raise ValueError(f"{what} does not match the model: {mismatch}")
    for name, ref in base.items():
        shape = np.shape(other[name])
        if shape != ref.shape:
            raise ValueError(f"{what}[{name!r}] has shape {shape}, expected {ref.shape}")


def check_numeric(arrays: Mapping[str, np.ndarray], what: str) -> None:
    """Raise ValueError unless every array of `arrays` holds real numbers (bool, int or float)."""
    for name, array in arrays.items():
        dtype = np.asarray(array).dtype
        if dtype.kind not in "biuf":
            raise ValueError(f"{what}[{name!r}] has dtype {dtype}, expected real numbers")


# arithmetic ----------------------------------------------------------------------------------


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
    """`a + b` by name, in `a`'s dtypes (0-d arrays stay arrays); names must match."""
    check_same_names(a.keys(), b.keys())
    return {k: np.asarray(np.add(a[k], b[k]).astype(a[k].dtype, copy=False)) for k in a}


def scaled(weights: Mapping[str, np.ndarray], names: list[str], factor: int) -> Weights:
    """`factor · weights[name]` for each of `names` in `sum_dtype` (a weighted sum begins)."""
    out: Weights = {}
    for name in names:
        array = weights[name]
        out[name] = np.asarray(np.multiply(array, factor, dtype=sum_dtype(array.dtype)))
    return out


def divided(acc: Mapping[str, np.ndarray], total: int, like: Mapping[str, np.ndarray]) -> Weights:
    """`acc / total` in the dtypes of `like` (non-float arrays rounded): a weighted sum's mean."""
    out: Weights = {}
    for name, value in acc.items():
        dtype = like[name].dtype
        mean = np.asarray(value / total)
        if not np.issubdtype(dtype, np.floating):
            mean = np.rint(mean)
        out[name] = np.asarray(mean.astype(dtype, copy=False))
    return out


def applied(ref: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`ref + step` as `ref`'s dtype (integer arrays take the rounded step).

    `step` is used up: a float step of `ref`'s dtype is overwritten and returned.
    """
    if not is_float(ref):
        return np.asarray(ref + np.rint(step), dtype=ref.dtype)
    if step.dtype == ref.dtype and step.flags.writeable and step.shape == ref.shape:
        return np.add(step, ref, out=step)
    return np.asarray(ref + step, dtype=ref.dtype)


def apply_step(base: Mapping[str, np.ndarray], step: Mapping[str, np.ndarray]) -> Weights:
    """`applied(base[name], step[name])` for every name of `base` (the step arrays are used up)."""
    return {name: applied(ref, step[name]) for name, ref in base.items()}


# dtypes and sizes ----------------------------------------------------------------------------
def is_float(array: np.ndarray) -> bool:
    """True for floating-point arrays (the ones that take fractional and adaptive steps)."""
    return bool(np.issubdtype(array.dtype, np.floating))


def accumulator_dtype(ref: np.ndarray) -> np.dtype:
    """What an optimizer's sums over `ref` run in: its own float dtype (at least float32), else
    float64."""
    if is_float(ref):
        return np.promote_types(ref.dtype, np.float32)
    return np.dtype(np.float64)


def sum_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a ring's partial sums travel in: float32/float64 as they are, anything else
    float64."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def zeros_like(base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zeros in each array's `accumulator_dtype` (accumulators and optimizer moments)."""
    return {name: np.zeros(ref.shape, dtype=accumulator_dtype(ref)) for name, ref in base.items()}


def nbytes(weights: Mapping[str, np.ndarray]) -> int:
    """The bytes of all arrays of `weights`."""
    return sum(int(v.nbytes) for v in weights.values())


# digest --------------------------------------------------------------------------------------
def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """16 hex digits over every array's name, dtype, shape and bytes (in name order), so logs of
    separate processes show they hold one model."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
