"""flamectl configuration: file < env < flags, FLAME_CONFIG, clear errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flame_sdk.cli import config as cli_config
from flame_sdk.cli.app import app
from flame_sdk.cli.config import DEFAULT_ENDPOINT, resolve_config
from schemas.errors import BadRequest, Invalid
from tests.client.fakes import FakeApi


def write_config(home: Path, text: str) -> Path:
    path = home / ".flame" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def resolve(home: Path, env: dict[str, str] | None = None, **flags: object) -> cli_config.CliConfig:
    args = {"config_path": None, "endpoint": None, "user": None, **flags}
    return resolve_config(env=env or {}, home=home, **args)  # type: ignore[arg-type]


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_config.getpass, "getuser", lambda: "login-name")
    config = resolve(tmp_path)
    assert (config.endpoint, config.user, config.source) == (DEFAULT_ENDPOINT, "login-name", None)


def test_file_in_home_is_read(tmp_path: Path) -> None:
    path = write_config(tmp_path, "apiserver:\n  endpoint: http://api:1\nuser: foo\nextra: 1\n")
    config = resolve(tmp_path)
    assert (config.endpoint, config.user, config.source) == ("http://api:1", "foo", path)


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    write_config(tmp_path, "apiserver:\n  endpoint: http://file:1\nuser: file-user\n")
    env = {"FLAME_APISERVER": "http://env:2", "FLAME_USER": "env-user"}
    assert resolve(tmp_path, env).endpoint == "http://env:2"
    assert resolve(tmp_path, env).user == "env-user"
    flagged = resolve(tmp_path, env, endpoint="http://flag:3", user="flag-user")
    assert (flagged.endpoint, flagged.user) == ("http://flag:3", "flag-user")
    partial = resolve(tmp_path, {"FLAME_USER": "env-user"})
    assert (partial.endpoint, partial.user) == ("http://file:1", "env-user")


def test_flame_config_env_and_flag_choose_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, "user: from-home\n")
    other = tmp_path / "other.yaml"
    other.write_text("user: from-env\n")
    flagged = tmp_path / "flag.yaml"
    flagged.write_text("user: from-flag\n")
    assert resolve(tmp_path, {"FLAME_CONFIG": str(other)}).user == "from-env"
    chosen = resolve(tmp_path, {"FLAME_CONFIG": str(other)}, config_path=flagged)
    assert chosen.user == "from-flag"


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BadRequest, match=r"nope\.yaml: config file not found"):
        resolve(tmp_path, config_path=missing)
    with pytest.raises(BadRequest, match=r"nope\.yaml"):
        resolve(tmp_path, {"FLAME_CONFIG": str(missing)})


def test_bad_files_are_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "apiserver: [unclosed\n")
    with pytest.raises(BadRequest, match=f"{path}: not valid YAML"):
        resolve(tmp_path)
    path.write_text("apiserver: http://not-a-mapping\n")
    with pytest.raises(Invalid, match=f"{path}: apiserver"):
        resolve(tmp_path)
    path.write_text("- a list\n")
    with pytest.raises(Invalid, match="expected a mapping"):
        resolve(tmp_path)


def test_cli_uses_the_resolved_endpoint_and_user(cli_env: FakeApi, tmp_path: Path) -> None:
    cli_env.on("GET", "/users/bob/designs", body=[])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("apiserver:\n  endpoint: http://from-file:9\nuser: carol\n")
    result = CliRunner().invoke(
        app,
        ["--config", str(cfg), "--endpoint", "http://flag:7", "--user", "bob", "get", "designs"],
    )
    assert result.exit_code == 0, result.output
    (request,) = cli_env.requests
    assert (request.url.host, request.url.port, request.url.path) == (
        "flag",
        7,
        "/users/bob/designs",
    )


def test_cli_reports_config_errors(cli_env: FakeApi, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "missing.yaml"), "get", "jobs"])
    assert result.exit_code == 3
    assert "missing.yaml: config file not found" in result.stderr
    assert cli_env.requests == []
