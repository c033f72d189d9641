"""Process hygiene: tie a child's life to its parent, hide a process from peers, stop trees."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


HUGE_PAGE_MALLOC = "glibc.malloc.hugetlb=1"
"""glibc tunable: malloc asks for transparent huge pages (`madvise`) on the blocks it maps, so
the model-sized buffers a training step allocates and frees fault in 2 MiB pages, not 4 KiB."""


def malloc_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a process that handles models: glibc's huge-page malloc added to
    `GLIBC_TUNABLES` (read at exec; a `glibc.malloc.hugetlb` the user set wins)."""
    out = dict(env)
    tunables = out.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        out["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGE_MALLOC}" if tunables else HUGE_PAGE_MALLOC
    return out


def hide_from_peers() -> None:
    """Make this process (and children it forks) non-dumpable (Linux): other processes of the
    same uid, such as role code, can neither ptrace it nor read its /proc/<pid>/environ or mem."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def _set() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return _set


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL these processes and their process groups (already-gone ones are skipped)."""
    for proc in procs:
        try:
            pgid = os.getpgid(proc.pid)
            if proc.is_running():
                proc.kill()
            if pgid != os.getpgid(0):
                signal_group(pgid, signal.SIGKILL)
        except (psutil.Error, ProcessLookupError):
            continue
