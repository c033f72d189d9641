"""The services of the local stack and how to start each (its console script, else its module)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Service:
    name: str
    script: str  # console script
    module: str  # fallback: `python -c "from <module> import main; main()"`


SERVICES = (
    Service("apiserver", "flame-apiserver", "flame_apiserver.main"),
    Service("controller", "flame-controller", "flame_controller.main"),
    Service("notifier", "flame-notifier", "flame_notifier.main"),
    Service("deployer", "flame-deployer", "flame_controller.deployers.main"),
)


# Secrets one service alone may hold: the others start without them (least privilege).
OWN_SECRETS = {"FLAME_MQTT_ADMIN_URL": "controller", "FLAME_RABBIT_ADMIN_URL": "controller"}


def service_env(service: Service, env: dict[str, str]) -> dict[str, str]:
    """`env` without the secrets that belong to another service."""
    return {k: v for k, v in env.items() if OWN_SECRETS.get(k, service.name) == service.name}


def command(service: Service) -> list[str]:
    """argv of the service: the console script beside this interpreter, on PATH, or `-c`."""
    beside = Path(sys.executable).parent / service.script
    found = str(beside) if beside.exists() else shutil.which(service.script)
    if found:
        return [found]
    return [sys.executable, "-c", f"from {service.module} import main; main()"]
