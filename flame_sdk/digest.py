"""A short content digest of `Weights`, so logs of separate processes show they hold one model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """16 hex digits over every array's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
