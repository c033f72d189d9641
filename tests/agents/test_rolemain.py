"""Fresh-interpreter role starts: `python -m flamelet.rolemain` titles the process, then runs the
script as `python script config` would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

TITLE = "flame-role trainer task=0123456789ab job=j1"
ROLE = textwrap.dedent(
    """
    import json, os, sys
    import sibling

    print(json.dumps({
        "name": __name__, "argv": sys.argv, "path0": sys.path[0], "sibling": sibling.VALUE,
        "title": open("/proc/self/cmdline", "rb").read().split(b"\\0")[0].decode(),
    }))
    if sys.argv[2] == "raise":
        raise RuntimeError("role code broke")
    sys.exit(int(sys.argv[2]))
    """
)


def run(
    tmp_path: Path, *args: str, source: str = ROLE, via_rolemain: bool = True
) -> subprocess.CompletedProcess[str]:
    """`python -m flamelet.rolemain TITLE main.py args...` (or plain `python main.py args...`)."""
    code_dir = tmp_path / "code" / "trainer"
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "main.py").write_text(source)
    (code_dir / "sibling.py").write_text("VALUE = 42\n")
    prefix = ["-m", "flamelet.rolemain", TITLE] if via_rolemain else []
    return subprocess.run(
        [sys.executable, *prefix, str(code_dir / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_script_runs_titled_as_a_plain_start_would(tmp_path):
    out = run(tmp_path, str(tmp_path / "config"), "7")
    assert out.returncode == 7, out.stderr
    seen = json.loads(out.stdout)
    script = tmp_path / "code" / "trainer" / "main.py"
    assert seen["title"] == TITLE
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(script), str(tmp_path / "config"), "7"]
    assert seen["path0"] == str(script.parent) and seen["sibling"] == 42


def test_uncaught_exception_reads_as_from_a_plain_start(tmp_path):
    titled = run(tmp_path, "config", "raise")
    plain = run(tmp_path, "config", "raise", via_rolemain=False)
    assert titled.returncode == plain.returncode == 1
    assert "RuntimeError: role code broke" in titled.stderr
    assert titled.stderr == plain.stderr  # same traceback: no frame of rolemain or runpy


def test_syntax_error_reads_as_from_a_plain_start(tmp_path):
    broken = "print('unclosed'\n"
    titled = run(tmp_path, "config", source=broken)
    plain = run(tmp_path, "config", source=broken, via_rolemain=False)
    assert titled.returncode == plain.returncode == 1
    assert "SyntaxError" in titled.stderr and titled.stderr == plain.stderr
