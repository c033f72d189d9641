"""glibc malloc settings: a role owning its process gives freed blocks back; simulations reuse them.

By default glibc serves a freed large block's size from its heap next time (the mmap threshold
grows up to 32 MiB), and every thread may get its own arena: model-sized buffers that come
and go each round (received messages, deltas, gradients) then stay resident as free heap.
A fixed threshold maps every block of `MMAP_THRESHOLD` bytes or more on its own, so `free`
returns it to the OS at once; `ARENA_MAX` arenas bound what worker threads keep.
A simulation (every role in one process) wants the opposite: it frees and allocates model-sized
blocks all the time, from several threads, and mapping each one anew costs a page fault per 4 KiB
under the process's memory lock (38 MB blocks took 30-80 ms to fill instead of 4). There blocks
come from the heap only and freed memory stays for reuse (`tune_malloc_for_simulation`).
Variables `MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX`, `MALLOC_MMAP_MAX_` and
`MALLOC_TRIM_THRESHOLD_` set by the user win.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2
SIMULATION_TRIM_THRESHOLD = 1 << 30  # free heap kept by a simulation before trimming
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
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


def tune_malloc_for_simulation() -> bool:
    """No block mapped on its own, 1 GiB of free heap kept: reuse instead of page faults (a
    simulation's process; see above). False where malloc is not glibc's."""
    libc = _libc()
    if libc is None:
        return False
    if "MALLOC_MMAP_MAX_" not in os.environ:
        libc.mallopt(_M_MMAP_MAX, 0)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_TRIM_THRESHOLD, SIMULATION_TRIM_THRESHOLD)
    return True
