"""pyproject's dependencies: the base install is the SDK and flamectl, and the lower bounds hold.

Both tests install a copy of this tree into a scratch venv from a wheelhouse kept between runs
(~/.cache/flame/wheelhouse or $FLAME_WHEELHOUSE; filled from the index when a wheel is missing,
so the first run downloads and later ones take seconds). The extras are `server`, `ml`, `k8s`,
`mqtt`, `all`, `dev`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.packaging import (
    copy_tree,
    install,
    lowest,
    make_venv,
    pyproject,
    requirements,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

IMPORT_ALL = Path(__file__).parent / "support" / "import_all.py"
SMOKE = Path(__file__).parent / "support" / "smoke_server.py"
SERVER_SIDE = ("fastapi", "uvicorn", "beanie", "pymongo", "nx_27017", "faststream", "kubernetes")
HEAVY = ("torch", "mlflow", "sklearn", "aiomqtt", "paho")
# the extras the lower-bound install takes (ml's torch is pinned exactly and mlflow is huge)
LOWEST_EXTRAS = ("server", "mqtt", "k8s")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("flame-src"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.pop("VIRTUAL_ENV", None)
    return env | {"HOME": str(home), "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}


def _run(argv: list[str | Path], home: Path) -> subprocess.CompletedProcess[str]:
    """Run in `home` with the scratch venv's scripts first on PATH (nx-27017, flamectl…)."""
    env = _env(home)
    venv_bin = Path(argv[0]).parent
    if (venv_bin / "activate").exists():
        env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=home)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_base_install_is_the_sdk_and_flamectl(source: Path, tmp_path: Path) -> None:
    bin_dir = make_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    _ok(install(bin_dir, str(source)))
    py = bin_dir / "python"

    assert "Usage" in _ok(_run([bin_dir / "flamectl", "--help"], home))
    assert _ok(_run([bin_dir / "flamectl", "--version"], home)).startswith("flamectl ")
    assert "Usage" in _ok(_run([bin_dir / "flame", "--help"], home))
    probe = (
        "import importlib.util as u, json, flame_sdk.client, flame_sdk.cli.app, flame_sdk.roles, "
        "flame_sdk.backends.rabbitmq, flamelet.main; "
        f"print(json.dumps([m for m in {[*SERVER_SIDE, *HEAVY]!r} if u.find_spec(m)]))"
    )
    assert json.loads(_ok(_run([py, "-c", probe], home))) == []  # none of them installed

    # every module imports, or misses only what an extra brings (no undeclared dependency)
    extras = [arg for extra in ("server", "ml", "k8s", "mqtt") for arg in ("--skip-extra", extra)]
    report = _run([py, IMPORT_ALL, *extras], home)
    assert report.returncode == 0, report.stdout[-4000:] + report.stderr[-2000:]

    up = _run([bin_dir / "flame", "up"], home)  # the server side is missing: it says which extra
    assert up.returncode == 1 and "pip install 'flame-fl[server]'" in up.stderr, up.stderr
    assert not (home / ".flame" / "run").exists()  # it stopped before starting anything
    service = _run([bin_dir / "flame-apiserver"], home)
    assert service.returncode == 1 and "flame-fl[server]" in service.stderr, service.stderr
    assert "usage" in _ok(_run([bin_dir / "flame-apiserver", "--help"], home))
    mqtt = "from flame_sdk.backends import create_backend; create_backend('mqtt', 'h', 'j', 'e')"
    refused = _run([py, "-c", mqtt], home)
    assert "MissingExtra" in refused.stderr and "pip install 'flame-fl[mqtt]'" in refused.stderr


def test_lower_bounds_install_and_import(source: Path, tmp_path: Path) -> None:
    pins = sorted({pin for req in requirements(LOWEST_EXTRAS, source) if (pin := lowest(req))})
    assert any(p.startswith("beanie==") for p in pins) and any("typer==" in p for p in pins)
    constraints = tmp_path / "lowest.txt"
    constraints.write_text("\n".join(pins) + "\n")
    bin_dir = make_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    extras = ",".join(LOWEST_EXTRAS)
    _ok(install(bin_dir, f"{source}[{extras}]", "-c", str(constraints)))

    listed = json.loads(_ok(_run([bin_dir / "pip", "list", "--format", "json"], home)))
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in listed}
    for pin in pins:  # every direct dependency really is at its lower bound
        name, wanted = pin.split("==")
        got = installed.get(name)
        assert got is not None and _same(got, wanted), f"{name}: {got} installed, bound {wanted}"

    report = _run([bin_dir / "python", IMPORT_ALL, "--skip-extra", "ml"], home)
    assert report.returncode == 0, report.stdout[-4000:] + report.stderr[-2000:]
    smoke = _run([bin_dir / "python", SMOKE], home)  # Beanie, FastAPI, multipart, FastStream
    assert smoke.returncode == 0 and "smoke ok" in smoke.stdout, smoke.stderr[-4000:]
    for script in pyproject()["scripts"]:
        assert "usage" in _ok(_run([bin_dir / script, "--help"], home)).lower()
    for verb in ("create", "get", "update", "remove", "start", "stop", "job"):
        _ok(_run([bin_dir / "flamectl", verb, "--help"], home))
    assert "_FLAMECTL_COMPLETE" in _ok(
        _run(["bash", "-c", f"'{bin_dir / 'flamectl'}' --show-completion; exit $?"], home)
    )


def _same(installed: str, bound: str) -> bool:
    """`4.18.0` is the bound `4.18`."""
    a, b = installed.split("."), bound.split(".")
    width = max(len(a), len(b))
    return a + ["0"] * (width - len(a)) == b + ["0"] * (width - len(b))
