"""Processes that handle models ask glibc for huge-page malloc (`malloc_env`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flame_common.processes import HUGE_PAGE_MALLOC, malloc_env
from flame_common.settings import FlameSettings
from flame_controller.deployers.local import flamelet_env
from flamelet.runner import role_env

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_the_tunable_is_added_appended_or_left_to_the_user() -> None:
    assert malloc_env({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": HUGE_PAGE_MALLOC}
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert malloc_env(mine)["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE_PAGE_MALLOC}"
    off = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert malloc_env(off) == off


def test_role_processes_and_their_agents_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    env = role_env({"PATH": "/bin"}, "job", "task", tmp_path / "metrics")
    assert env["GLIBC_TUNABLES"] == HUGE_PAGE_MALLOC  # a role started cold
    assert flamelet_env(FlameSettings(), "key")["GLIBC_TUNABLES"] == HUGE_PAGE_MALLOC


CHILD = """
import ctypes
ctypes.CDLL(None).mallopt(-3, 1 << 20)  # what roles/memory.py does: big blocks mapped alone
block = bytearray(64 << 20)  # touched: calloc'd pages are written below
block[::4096] = b"x" * len(block[::4096])
rollup = open("/proc/self/smaps_rollup").read().split("\\n")
print(next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages")))
"""


@pytest.mark.skipif(
    not THP.exists() or "[never]" in THP.read_text(), reason="no transparent huge pages here"
)
def test_a_process_started_with_it_backs_model_sized_blocks_with_huge_pages() -> None:
    def huge_kib(env: dict[str, str]) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if "[always]" not in THP.read_text():
        assert huge_kib(plain) == 0
    assert huge_kib(malloc_env(plain)) >= 32 << 10  # at least half the block
