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


def zeros_like(base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 zeros with the shapes of `base` (accumulators and optimizer moments)."""
    return {name: np.zeros(ref.shape, dtype=np.float64) for name, ref in base.items()}


def apply_step(base: Mapping[str, np.ndarray], step: Mapping[str, np.ndarray]) -> Weights:
    """Return `base + step` with each array's dtype kept; integer arrays take the rounded step."""
    out: Weights = {}
    for name, ref in base.items():
        delta = step[name] if is_float(ref) else np.rint(step[name])
        out[name] = (ref + delta).astype(ref.dtype, copy=False)
    return out
