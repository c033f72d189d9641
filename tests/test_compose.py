"""The docker compose stack: real console scripts and FLAME_* settings, health checks and start
order, the image's ML stack, MLflow's version, Mosquitto, worker logs, the build context."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from flame_common import health
from flame_common.settings import FlameSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "compose" / "Dockerfile"
# what `up` needs set (the file refuses to render without them)
SECRETS = (
    "FLAME_ADMIN_TOKEN_SHA256",
    "FLAME_REGISTRATION_TOKEN_SHA256",
    "FLAME_REGISTRATION_TOKEN",
    "FLAME_SERVICE_SECRET",
)


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


def _run_steps() -> list[str]:
    """The Dockerfile's RUN instructions, in order (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line[4:].strip() for line in text.splitlines() if line.startswith("RUN ")]


def test_image_installs_cpu_torch_first_then_every_extra() -> None:
    steps = _run_steps()
    torch = [i for i, s in enumerate(steps) if "torch==2.13.0" in s and "pip install" in s]
    assert torch, "the image does not install torch==2.13.0 explicitly"
    assert "--index-url https://download.pytorch.org/whl/cpu" in steps[torch[0]]
    extras = [i for i, s in enumerate(steps) if re.search(r"pip install [\"']?\.\[all\]", s)]
    assert extras, "the image does not install the project with its [all] extra"
    assert torch[0] < extras[0], "torch must be installed before the project's extras"
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "ml" in extra["optional-dependencies"], "pyproject.toml has no [ml] extra"
    all_ = " ".join(extra["optional-dependencies"].get("all", []))
    assert "ml" in re.findall(r"\w+", all_.split("[", 1)[-1]), "[all] does not include [ml]"


def test_every_depends_on_waits_for_a_healthy_service() -> None:
    services = _services()
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on as a list does not wait for health"
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}: {how}"
    for name in ("apiserver", "controller", "notifier", "deployer"):
        deps = set(services[name]["depends_on"])  # type: ignore[arg-type]
        assert {"rabbitmq", "mongo", "mlflow", "mosquitto"} <= deps, f"{name} waits for {deps}"
    assert "apiserver" in services["deployer"]["depends_on"]  # type: ignore[operator]


def test_mlflow_server_has_the_clients_major_version() -> None:
    image = str(_services()["mlflow"]["image"])
    server = Version(image.rsplit(":", 1)[1].lstrip("v"))
    ml = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (requirement,) = [Requirement(r) for r in ml["ml"] if Requirement(r).name == "mlflow"]
    assert requirement.specifier.contains(server), f"{image} is outside {requirement}"
    majors = {
        m
        for m in range(1, 10)
        for minor in (0, 99)
        if requirement.specifier.contains(f"{m}.{minor}")
    }
    if len(majors) == 1:  # pyproject.toml pins the client's major version
        assert majors == {server.major}, f"MLflow server {server}, client {requirement}"
        return
    try:  # else the client pip resolved from it
        client = Version(importlib.metadata.version("mlflow"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{requirement} admits several majors and no client is installed to compare")
    assert server.major == client.major, f"MLflow server {server}, client {client}"


def test_mosquitto_serves_the_mqtt_job_broker() -> None:
    services = _services()
    mosquitto = services["mosquitto"]
    assert str(mosquitto["image"]).startswith("eclipse-mosquitto:2")
    (mount,) = mosquitto["volumes"]  # type: ignore[misc]
    source, target = str(mount).split(":")[:2]
    assert target == "/mosquitto/config/mosquitto.conf"
    conf = (COMPOSE.parent / source).read_text()
    assert re.search(r"^listener 1883\b", conf, re.M) and "allow_anonymous true" in conf
    env = services["controller"]["environment"]
    brokers = yaml.safe_load(str(env["FLAME_JOB_BROKERS"]))  # type: ignore[index]
    sorts = {b["sort"]: b["host"] for b in brokers}
    assert sorts.get("mqtt") == "mqtt://mosquitto:1883" and "rabbitmq" in sorts


def test_worker_logs_are_on_a_named_volume_of_the_deployer() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    home = re.search(r"FLAME_HOME=(\S+)", DOCKERFILE.read_text())
    assert home, "the image sets no FLAME_HOME"
    mounts = [str(v).split(":") for v in compose["services"]["deployer"].get("volumes", [])]
    named = [m for m in mounts if m[0] in (compose.get("volumes") or {})]
    assert [home.group(1)] in [m[1:2] for m in named], f"FLAME_HOME {home.group(1)} not on a volume"


def test_dockerignore_keeps_the_repository_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "**/__pycache__", "**/.env", "tests"} <= ignored
    copied = re.findall(r"^COPY (\S+)", DOCKERFILE.read_text(), re.M)
    assert copied and not set(copied) & ignored, "the Dockerfile copies an ignored path"


def _empty(tmp_path: Path) -> Path:
    """An empty env file: a developer's compose/.env must not decide the outcome."""
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")  # compose/.env, if any, is not read (--env-file)
    if tool is None:  # the structure is checked above; the full check needs the tool
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {**os.environ, **{name: "x" for name in SECRETS}}
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "--env-file", str(_empty(tmp_path)), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update({name: "x" for name in SECRETS if name != "FLAME_SERVICE_SECRET"})
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "--env-file", str(_empty(tmp_path)), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0 and "FLAME_SERVICE_SECRET is not set" in result.stderr
