"""The docker compose stack names only real console scripts and real FLAME_* settings."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from flame_common import health
from flame_common.settings import FlameSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose" / "docker-compose.yml"


def _services() -> dict[str, dict[str, object]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def test_flame_services_run_declared_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    flame = {name: svc for name, svc in _services().items() if svc.get("image") == "flame:dev"}
    assert set(flame) == {"apiserver", "controller", "notifier", "deployer"}
    for name, svc in flame.items():
        command = svc["command"]
        assert isinstance(command, list)
        assert command[0] in scripts, f"{name} runs unknown script {command[0]}"


def test_environment_is_understood_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {f"FLAME_{name.upper()}" for name in FlameSettings.model_fields}
    for name, svc in _services().items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict)
        flame_env = {k: str(v) for k, v in env.items() if k.startswith("FLAME_")}
        assert set(flame_env) <= fields, f"{name}: unknown settings {set(flame_env) - fields}"
        if flame_env:
            with monkeypatch.context() as env_patch:
                for key, value in flame_env.items():
                    env_patch.setenv(key, value)
                settings = FlameSettings()  # parses the values exactly as the services will
            assert settings.mongo_url.startswith("mongodb://")
            assert settings.job_brokers[0]["sort"] == "rabbitmq"


def test_every_service_restarts_and_has_a_health_check() -> None:
    for name, svc in _services().items():
        assert svc.get("restart") in ("unless-stopped", "always"), f"{name} is not restarted"
        health = svc.get("healthcheck")
        assert isinstance(health, dict) and health.get("test"), f"{name} has no health check"
        assert health["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {health['test']}"


def test_flame_health_checks_probe_each_service() -> None:
    """apiserver: its /readyz; the others: `python -m flame_common.health <service>`."""
    settings = FlameSettings()
    for name, svc in _services().items():
        if svc.get("image") != "flame:dev":
            continue
        test = svc["healthcheck"]["test"]  # type: ignore[index]
        if name == "apiserver":
            assert "http://127.0.0.1:10100/readyz" in test[-1]
            continue
        assert test[1:4] == ["python", "-m", "flame_common.health"] and test[4] == name
        compute = test[test.index("--compute") + 1] if "--compute" in test else "default"
        assert health.queues(settings, name, compute)  # a service the check knows
        if name == "deployer":
            assert svc["command"][svc["command"].index("--compute") + 1] == compute  # type: ignore[index]


def test_docker_compose_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:  # the structure is checked above; the full check needs the tool
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
