"""scripts/install.sh on Debian's own Python (PEP 668): a project venv, nothing in the system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEM_PYTHON = Path("/usr/bin/python3")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system Python at /usr/bin/python3"),
]


def _system_python_is_managed() -> bool:
    """True when the system Python refuses pip installs (an EXTERNALLY-MANAGED marker, PEP 668)."""
    stdlib = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


def _site_listing() -> dict[str, list[str]]:
    """The packages in every site directory of the system Python (to prove nothing was added)."""
    dirs = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {d: sorted(os.listdir(d)) if os.path.isdir(d) else [] for d in dirs}


def _system_env(home: Path) -> dict[str, str]:
    """A user's shell: scratch HOME, no venv active, the system Python first as `python3`."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env["PATH"] = os.pathsep.join([str(SYSTEM_PYTHON.parent), *path])
    # The scratch HOME keeps the machine's pip cache so that the test does not download again.
    env["PIP_CACHE_DIR"] = env.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env["HOME"] = str(home)
    return env


def test_install_makes_a_venv_and_leaves_the_system_python_alone(tmp_path: Path) -> None:
    if not _system_python_is_managed():
        pytest.skip("the system Python is not externally managed (no PEP 668 marker)")
    refused = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "--no-deps", "flame-fl"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0  # the very error the old install script stopped on
    clone = tmp_path / "flame"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    env = _system_env(home) | {"PYTHON": str(SYSTEM_PYTHON), "FLAME_EXTRAS": ""}
    before = _site_listing()

    first = subprocess.run(
        ["bash", "scripts/install.sh"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "externally-managed" not in first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert "source .venv/bin/activate" in last, last

    venv = clone / ".venv"
    config = (venv / "pyvenv.cfg").read_text()
    assert f"home = {SYSTEM_PYTHON.parent}" in config  # made from the system Python
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import flame_sdk; print(flame_sdk.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone)  # editable install of this clone
    cli = subprocess.run(
        [str(venv / "bin" / "flamectl"), "--help"], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0 and "Usage" in cli.stdout, cli.stderr
    assert _site_listing() == before  # nothing written into the system Python
    assert not (home / ".local" / "lib").exists()  # nor into the user's site directory

    again = subprocess.run(
        ["bash", "scripts/install.sh"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout
    assert "installing" not in again.stdout


def test_install_names_a_python_that_is_too_old(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'Python 3.9.2'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh")],
        env=_system_env(tmp_path) | {"PYTHON": str(fake), "FLAME_VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "needs Python 3.11 or newer" in done.stderr and "3.9.2" in done.stderr
    assert not (tmp_path / "venv").exists()
