"""flamectl token verbs and where the token comes from (--token, $FLAME_TOKEN, config file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flame_sdk.cli.app import app
from tests.client.fakes import FakeApi

CREATED = {
    "id": "t1",
    "userId": "bob",
    "scope": "admin",
    "name": "ops",
    "createdAt": "2026-01-02T03:04:05Z",
    "token": "s3cret-token",
}


def flamectl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_create_token_prints_it_once_and_sends_the_scope(cli_env: FakeApi) -> None:
    cli_env.on("POST", "/tokens", status=201, body=CREATED)
    code, out, _ = flamectl("create", "token", "bob", "--admin", "--name", "ops")
    assert code == 0 and "s3cret-token" in out and "not shown again" in out
    (request,) = cli_env.sent("POST", "/tokens")
    assert json.loads(request.content) == {"userId": "bob", "scope": "admin", "name": "ops"}
    code, out, _ = flamectl(
        "-o", "json", "create", "token", "bob", "--scope", "compute-registration"
    )
    assert json.loads(out)["token"] == "s3cret-token"
    assert json.loads(cli_env.sent("POST", "/tokens")[1].content)["scope"] == (
        "compute-registration"
    )


def test_get_and_remove_tokens(cli_env: FakeApi) -> None:
    listed = {k: v for k, v in CREATED.items() if k != "token"}
    cli_env.on("GET", "/tokens", body=[listed])
    code, out, _ = flamectl("get", "tokens", "--for", "bob")
    assert code == 0 and "t1" in out and "admin" in out and "s3cret" not in out
    assert cli_env.sent("GET", "/tokens")[0].url.params["userId"] == "bob"
    cli_env.on("DELETE", "/tokens/t1", body="token 't1' revoked")
    code, out, _ = flamectl("remove", "token", "t1")
    assert code == 0 and "Token 't1' removed" in out


def test_token_precedence_flag_env_file(
    cli_env: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_env.on("GET", "/users/alice/designs", body=[])
    config = tmp_path / "c.yaml"
    config.write_text("token: from-file\n")

    def sent_token(*args: str) -> str:
        code, _, err = flamectl("--config", str(config), *args, "get", "designs")
        assert code == 0, err
        return cli_env.requests[-1].headers["authorization"]

    assert sent_token() == "Bearer from-file"
    monkeypatch.setenv("FLAME_TOKEN", "from-env")
    assert sent_token() == "Bearer from-env"
    assert sent_token("--token", "from-flag") == "Bearer from-flag"


def test_refusals_exit_with_their_code(cli_env: FakeApi) -> None:
    body = {"code": "forbidden", "message": "a token of user 'bob' cannot act for user 'alice'"}
    cli_env.on("GET", "/users/alice/jobs", status=403, body=body)
    code, _, err = flamectl("get", "jobs")
    assert code != 0 and "cannot act for user 'alice'" in err
    cli_env.on(
        "GET", "/users/alice/designs", status=401, body={"code": "unauthorized", "message": "x"}
    )
    code2, _, _ = flamectl("get", "designs")
    assert code2 != 0 and code2 != code
