"""In-place scaled add `acc += a·x` for the streaming accumulators, without model-size temporaries.

Float32/float64 pairs go through BLAS axpy (`scipy.linalg.blas`, imported on first use so that
importing the optimizers stays cheap), held to one BLAS thread with `threadpoolctl`: the add is
memory-bound, and OpenBLAS worker threads on a busy machine made it several times slower (and
slowed the rest of the process while they spun). Anything else (other dtypes, a dtype differing
from the accumulator's, unaligned or non-contiguous input, scipy or threadpoolctl missing) and
arrays under `BLAS_MIN` elements (where entering the thread limit, ~15 µs, costs more than it
saves) are folded in cache-sized chunks through one scratch buffer. A non-contiguous `x` is
flattened first, which copies that one array.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

CHUNK = 1 << 18  # elements per fallback step: the scratch stays within a core's L2 cache
_BLAS_MAX = 1 << 30  # elements per axpy call, inside the 32-bit BLAS length
BLAS_MIN = 1 << 17  # smaller arrays take the numpy path: measured faster up to ~100k elements
_BLAS_LOCK = threading.Lock()  # one thread-limited BLAS section at a time, so limits restore

Axpy = Callable[..., Any]


@functools.cache
def _axpy(dtype: np.dtype) -> Axpy | None:
    """A single-threaded BLAS `y += a·x` for 1-D contiguous `dtype` arrays, or None."""
    try:
        from scipy.linalg import blas
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    routine = {"float32": blas.saxpy, "float64": blas.daxpy}.get(dtype.name)
    if routine is None:
        return None
    threads = ThreadpoolController()

    def axpy(x: np.ndarray, y: np.ndarray, a: float) -> None:
        with _BLAS_LOCK, threads.limit(limits=1, user_api="blas"):
            for start in range(0, y.size, _BLAS_MAX):
                routine(x[start : start + _BLAS_MAX], y[start : start + _BLAS_MAX], a=a)

    return axpy


class ScaledAdd:
    """`acc += a·x` in place; owns the one scratch chunk its fallback path needs."""

    def __init__(self) -> None:
        self._scratch: np.ndarray | None = None

    def __call__(self, acc: np.ndarray, x: Any, a: float) -> None:
        """Add `a·x` into `acc` (a C-contiguous float array of x's shape; x any real array)."""
        if not acc.flags.c_contiguous or not acc.flags.writeable:
            raise ValueError("the accumulator must be a writeable C-contiguous array")
        x = np.asarray(x)
        if a == 1:
            np.add(acc, x, out=acc)
            return
        flat_acc = acc.reshape(-1)
        axpy = _axpy(acc.dtype) if x.dtype == acc.dtype and acc.size >= BLAS_MIN else None
        if axpy is not None and x.flags.c_contiguous and x.flags.aligned:
            axpy(x.reshape(-1), flat_acc, a)
            return
        self._chunked(flat_acc, np.ravel(x), a)

    def _chunked(self, flat_acc: np.ndarray, flat_x: np.ndarray, a: float) -> None:
        nbytes = CHUNK * flat_acc.itemsize
        if self._scratch is None or self._scratch.size < nbytes:
            self._scratch = np.empty(nbytes, np.uint8)
        scratch = self._scratch[:nbytes].view(flat_acc.dtype)
        for start in range(0, flat_acc.size, CHUNK):
            part = flat_acc[start : start + CHUNK]
            scaled = scratch[: part.size]
            np.multiply(flat_x[start : start + CHUNK], a, out=scaled, dtype=scaled.dtype)
            np.add(part, scaled, out=part)
