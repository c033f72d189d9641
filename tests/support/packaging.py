"""Scratch installs of this tree: a copy of the source, a venv, the dependencies pyproject names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "flame-fl"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$")


def pyproject(root: Path = ROOT) -> dict:
    with (root / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def requirements(extras: tuple[str, ...] = (), root: Path = ROOT) -> list[str]:
    """The base dependencies plus those of `extras` (self-references flame-fl[a,b] expanded)."""
    project = pyproject(root)
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            name, more, _ = _split(req)
            if name == PROJECT:
                todo.extend(e.strip() for e in (more or "[]")[1:-1].split(",") if e.strip())
            else:
                out.append(req)
    return out


def lowest(requirement: str) -> str | None:
    """`name==<lower bound>` of a requirement with a `>=` or `==` bound (None: unbounded)."""
    name, _, spec = _split(requirement)
    for clause in spec.split(","):
        clause = clause.strip()
        if clause.startswith((">=", "==")):
            return f"{name}=={clause[2:].strip()}"
    return None


def _split(requirement: str) -> tuple[str, str | None, str]:
    match = _REQUIREMENT.match(requirement.split(";")[0])
    assert match, f"unreadable requirement {requirement!r}"
    return match.group(1).lower().replace("_", "-"), match.group(2), match.group(3)


def copy_tree(dest: Path) -> Path:
    """The working tree as it is now (tracked and new files, not the ignored ones) under `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        src = ROOT / raw.decode()
        if src.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dest


def make_venv(where: Path) -> Path:
    """A fresh venv (no system site-packages); returns its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin"


def pip(bin_dir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", *args, "-q"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wheelhouse() -> Path:
    """Where the wheels of the scratch installs are kept between runs ($FLAME_WHEELHOUSE)."""
    where = os.environ.get("FLAME_WHEELHOUSE") or Path.home() / ".cache" / "flame" / "wheelhouse"
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


def install(bin_dir: Path, spec: str, *pip_args: str) -> subprocess.CompletedProcess[str]:
    """`pip install spec` from the wheelhouse alone; when it lacks a wheel, fill it from the
    index first (a first run downloads, later ones install offline in seconds)."""
    house = str(wheelhouse())
    offline = ("--no-index", "--find-links", house)
    done = pip(bin_dir, "install", *offline, spec, *pip_args)
    if done.returncode == 0:
        return done
    tools = pip(bin_dir, "download", "-d", house, "setuptools>=68", "wheel")
    if tools.returncode != 0:
        return tools
    filled = pip(bin_dir, "wheel", "--find-links", house, "-w", house, spec, *pip_args)
    for built in Path(house).glob("flame_fl-*.whl"):  # this tree changes: always built afresh
        built.unlink()
    if filled.returncode != 0:
        return filled
    return pip(bin_dir, "install", *offline, spec, *pip_args)
