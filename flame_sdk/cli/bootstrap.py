"""Secrets of the local stack: the admin token in config.yaml (mode 0600), hashes for services."""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path
from typing import Any

from schemas.token import token_sha256


def _read(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def admin_token(path: Path) -> str:
    """The token of the config file at `path` (it stays the stack's admin token), else a new one."""
    token = _read(path).get("token")
    return token if isinstance(token, str) and token else secrets.token_urlsafe(32)


def service_secrets(token: str) -> dict[str, str]:
    """What the services are told: the admin token's hash only, a fresh registration token for
    the stack's own deployer (POST /computes), and a fresh service secret (their proofs on the
    bus, `flame_common.proofs`)."""
    registration = secrets.token_urlsafe(32)
    return {
        "FLAME_ADMIN_TOKEN_SHA256": token_sha256(token),
        "FLAME_REGISTRATION_TOKEN_SHA256": token_sha256(registration),
        "FLAME_REGISTRATION_TOKEN": registration,
        "FLAME_SERVICE_SECRET": secrets.token_urlsafe(32),
    }


def write_cli_config(path: Path, endpoint: str, token: str, ca_file: str = "") -> Path:
    """flamectl's config: the endpoint (and the CA its certificate chains to), the admin token
    and (kept if set) the user; mode 0600, written to a new file so the token is never readable
    by others, even for a moment."""
    import yaml

    current = _read(path)
    current["apiserver"] = {"endpoint": endpoint, **({"caFile": ca_file} if ca_file else {})}
    current.setdefault("user", getpass.getuser())
    current["token"] = token
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(yaml.safe_dump(current, sort_keys=False))
    os.replace(tmp, path)
    return path


def dashboard_link(path: Path) -> str:
    """The apiserver's dashboard (`/ui`) with the token and user of flamectl's config at `path`
    in the URL fragment, which the browser keeps to itself (never sent to the server)."""
    from urllib.parse import urlencode

    config = _read(path)
    endpoint = str((config.get("apiserver") or {}).get("endpoint", "")).rstrip("/")
    fragment = urlencode({"token": config.get("token", ""), "user": config.get("user", "")})
    return f"{endpoint}/ui#{fragment}"
