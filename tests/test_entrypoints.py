"""Every console script: --help and --version without side effects; shell completion scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
with (ROOT / "pyproject.toml").open("rb") as _f:
    SCRIPTS = sorted(tomllib.load(_f)["project"]["scripts"])


def _env(home: Path) -> dict[str, str]:
    """No FLAME_* variable at all, a scratch HOME (so nothing can read or write ~/.flame)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    return env | {"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "120"}


def _run(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=_env(home), timeout=60)


def test_every_script_is_covered() -> None:
    assert {"flame", "flamectl", "flame-apiserver", "flamelet", "flame-sim"} <= set(SCRIPTS)
    missing = [s for s in SCRIPTS if not (BIN / s).exists()]
    assert not missing, f"not installed beside {sys.executable}: {missing}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_does_nothing_else(script: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = _run([str(BIN / script), "--help"], home)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() and script in done.stdout
    assert done.stderr == ""  # no settings error, no log line, no connection attempt
    assert list(home.iterdir()) == []  # no ~/.flame (config, logs, pid files) made


@pytest.mark.parametrize("script", SCRIPTS)
def test_version(script: str, tmp_path: Path) -> None:
    done = _run([str(BIN / script), "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{script} {version('flame-fl')} (flame-fl)"


MARKS = {"bash": "complete -o default -F", "zsh": "compdef", "fish": "complete --command"}


@pytest.mark.parametrize("script", ["flamectl", "flame"])
def test_show_completion_detects_the_shell(script: str, tmp_path: Path) -> None:
    # typer detects the shell from the parent process: run from bash (not exec'ed by it)
    done = _run(["bash", "-c", f"'{BIN / script}' --show-completion; exit $?"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"_{script.upper()}_COMPLETE" in done.stdout  # the script calls the program back
    assert MARKS["bash"] in done.stdout


@pytest.mark.parametrize("script", ["flamectl", "flame"])
@pytest.mark.parametrize("shell", sorted(MARKS))
def test_show_completion_for_a_named_shell(script: str, shell: str, tmp_path: Path) -> None:
    # typer's switch to name the shell instead of detecting it (as in `--install-completion zsh`)
    argv = [str(BIN / script), "--show-completion", shell]
    env = _env(tmp_path) | {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"_{script.upper()}_COMPLETE" in done.stdout and MARKS[shell] in done.stdout
