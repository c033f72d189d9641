"""Named numpy arrays (`Weights`) and the small array helpers every optimizer shares."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Weights = dict[str, np.ndarray]


def is_float(array: np.ndarray) -> bool:
    """True for floating-point arrays (the ones that take fractional and adaptive steps)."""
    return bool(np.issubdtype(array.dtype, np.floating))


def check_like(base: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], what: str) -> None:
    """Raise ValueError unless `other` has exactly the names and shapes of `base`."""
    missing = sorted(set(base) - set(other))
    extra = sorted(set(other) - set(base))
    if missing or extra:
        raise ValueError(f"{what} does not match the model: missing {missing}, unexpected {extra}")
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


def accumulator_dtype(ref: np.ndarray) -> np.dtype:
    """What sums over `ref` run in: its own float dtype (at least float32), else float64."""
    if is_float(ref):
        return np.promote_types(ref.dtype, np.float32)
    return np.dtype(np.float64)


def zeros_like(base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zeros in each array's `accumulator_dtype` (accumulators and optimizer moments)."""
    return {name: np.zeros(ref.shape, dtype=accumulator_dtype(ref)) for name, ref in base.items()}


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
