"""`flame up`'s secrets: the admin token kept in config.yaml (0600), only hashes for services."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from flame_sdk.cli.bootstrap import admin_token, service_secrets, write_cli_config
from schemas.token import token_sha256


def test_config_is_written_0600_with_the_token(tmp_path: Path) -> None:
    path = tmp_path / "home" / "config.yaml"
    token = admin_token(path)
    assert len(token) >= 40
    write_cli_config(path, "http://127.0.0.1:1", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = yaml.safe_load(path.read_text())
    assert written["token"] == token and written["apiserver"] == {"endpoint": "http://127.0.0.1:1"}
    assert admin_token(path) == token  # a later `flame up` keeps the same admin token


def test_an_existing_readable_config_is_tightened_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("user: carol\nextra: 1\n")
    path.chmod(0o644)
    write_cli_config(path, "http://api:2", "t0ken")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == {
        "user": "carol",
        "extra": 1,
        "apiserver": {"endpoint": "http://api:2"},
        "token": "t0ken",
    }
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_services_get_the_admin_token_hash_only(tmp_path: Path) -> None:
    secrets = service_secrets("the-admin-token")
    assert secrets["FLAME_ADMIN_TOKEN_SHA256"] == token_sha256("the-admin-token")
    assert "the-admin-token" not in secrets.values()
    registration = secrets["FLAME_REGISTRATION_TOKEN"]
    assert secrets["FLAME_REGISTRATION_TOKEN_SHA256"] == token_sha256(registration)
    assert service_secrets("the-admin-token")["FLAME_REGISTRATION_TOKEN"] != registration
    service = secrets["FLAME_SERVICE_SECRET"]  # the services' proofs on the bus, per stack
    assert len(service) >= 32
    assert service_secrets("the-admin-token")["FLAME_SERVICE_SECRET"] != service
