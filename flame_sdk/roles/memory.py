"""glibc malloc settings for a role that owns its process, so freed model-sized buffers go back.

By default glibc serves a freed large block's size from its heap next time (the mmap threshold
grows up to 32 MiB), and every thread may get its own arena: model-sized buffers that come
and go each round (received messages, deltas, gradients) then stay resident as free heap.
A fixed threshold maps every block of `MMAP_THRESHOLD` bytes or more on its own, so `free`
returns it to the OS at once; `ARENA_MAX` arenas bound what worker threads keep.
Variables `MALLOC_MMAP_THRESHOLD_` / `MALLOC_ARENA_MAX` set by the user win.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> bool:
    """Apply the settings above to this process; False where malloc is not glibc's."""
    libc = _libc()
    if libc is None:
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    return True
