"""flamectl configuration: ~/.flame/config.yaml, then env FLAME_*, then command-line flags."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import BadRequest, Invalid

DEFAULT_ENDPOINT = "http://127.0.0.1:10100"
ENV_CONFIG, ENV_ENDPOINT, ENV_USER = "FLAME_CONFIG", "FLAME_APISERVER", "FLAME_USER"
ENV_TOKEN, ENV_CA_FILE = "FLAME_TOKEN", "FLAME_CA_FILE"


class _ApiServer(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    endpoint: str = ""
    ca_file: str = Field("", alias="caFile")


class ConfigFile(BaseModel):
    """The config file: `apiserver: {endpoint: URL, caFile: CA of its certificate}`, `user: NAME`
    and `token: API token` (other keys ignored)."""

    model_config = ConfigDict(extra="ignore")
    apiserver: _ApiServer = _ApiServer()
    user: str = ""
    token: str = ""


@dataclass(frozen=True)
class CliConfig:
    endpoint: str
    user: str
    source: Path | None  # the config file that was read, if any
    token: str = ""
    ca_file: str = ""  # the CA an https endpoint's certificate must chain to ("": system CAs)


def default_config_path(home: Path) -> Path:
    return home / ".flame" / "config.yaml"


def read_config_file(path: Path) -> ConfigFile:
    """Parse a config file; BadRequest/Invalid name the file and the problem."""
    import yaml  # only when there is a file to read

    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read the config file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise BadRequest(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return ConfigFile()
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a mapping with 'apiserver' and 'user'")
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise Invalid(f"{path}: {problems}") from exc


def resolve_config(
    *,
    config_path: Path | None,
    endpoint: str | None,
    user: str | None,
    env: Mapping[str, str],
    home: Path,
    token: str | None = None,
    ca_file: str | None = None,
) -> CliConfig:
    """Flags win over env (FLAME_APISERVER, FLAME_USER, FLAME_TOKEN, FLAME_CA_FILE), env over the
    file, the file over defaults.

    The file is `config_path`, else $FLAME_CONFIG, else $FLAME_HOME/config.yaml (the one
    `flame up` writes), else ~/.flame/config.yaml; a file named
    explicitly must exist, the default one may be missing. The default user is the login name.
    """
    explicit = config_path or (Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else None)
    flame_home = Path(env["FLAME_HOME"]) if env.get("FLAME_HOME") else None
    path = explicit or (flame_home / "config.yaml" if flame_home else default_config_path(home))
    if explicit is not None and not path.is_file():
        raise BadRequest(f"{path}: config file not found")
    file = read_config_file(path) if path.is_file() else None
    resolved_endpoint = (
        endpoint
        or env.get(ENV_ENDPOINT)
        or (file.apiserver.endpoint if file else "")
        or DEFAULT_ENDPOINT
    )
    resolved_user = user or env.get(ENV_USER) or (file.user if file else "") or getpass.getuser()
    resolved_token = token or env.get(ENV_TOKEN) or (file.token if file else "")
    resolved_ca = ca_file or env.get(ENV_CA_FILE) or (file.apiserver.ca_file if file else "")
    source = path if file is not None else None
    return CliConfig(resolved_endpoint, resolved_user, source, resolved_token, resolved_ca)
