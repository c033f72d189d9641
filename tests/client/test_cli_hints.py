"""flamectl errors: one JSON object on stderr under -o json, and the hints that come with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flame_common.embedded import free_port
from flame_sdk.cli.app import app
from flame_sdk.cli.entry import json_requested, run_app
from flame_sdk.cli.exit_codes import ExitCode
from tests.client.fakes import FakeApi

DESIGN = "/users/alice/designs/x"
TOKEN_INFO = {"id": "t1", "scope": "user", "name": "", "createdAt": "2026-01-02T03:04:05Z"}


def flamectl(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def only_json(stderr: str) -> dict:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return json.loads(lines[0])


def test_api_error_under_json_output_is_one_json_object(cli_env: FakeApi) -> None:
    cli_env.on("GET", DESIGN, 404, {"code": "not_found", "message": "design 'x' not found"})
    result = flamectl("-o", "json", "get", "design", "x")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stdout == ""
    assert only_json(result.stderr) == {
        "error": "design 'x' not found",
        "code": 6,
        "kind": "not_found",
    }
    plain = flamectl("get", "design", "x")  # unchanged without -o json
    assert plain.exit_code == ExitCode.NOT_FOUND
    assert plain.stderr == "Error: design 'x' not found\n"


def test_local_file_error_under_json_output(cli_env: FakeApi, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = flamectl("-o", "json", "create", "dataset", str(missing))
    assert result.exit_code == ExitCode.BAD_REQUEST
    body = only_json(result.stderr)
    assert body["code"] == 3 and body["kind"] == "bad_request" and str(missing) in body["error"]


def test_unreachable_apiserver_hints_at_flame_up_and_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = flamectl("-o", "json", "--endpoint", endpoint, "--user", "u", "get", "jobs")
    assert result.exit_code == ExitCode.UNAVAILABLE
    body = only_json(result.stderr)
    assert body["code"] == 11 and body["kind"] == "unavailable" and endpoint in body["error"]
    assert "flame up" in body["hint"] and "flame status" in body["hint"]
    plain = flamectl("--endpoint", endpoint, "--user", "u", "get", "jobs")
    assert "(hint: `flame status`" in plain.stderr and "`flame up` starts it" in plain.stderr


def test_401_without_a_token_says_where_to_set_one(cli_env: FakeApi) -> None:
    cli_env.on("GET", DESIGN, 401, {"code": "unauthorized", "message": "a token is required"})
    result = flamectl("get", "design", "x")
    assert result.exit_code == ExitCode.UNAUTHORIZED
    assert "no API token is set" in result.stderr
    assert "--token" in result.stderr and "$FLAME_TOKEN" in result.stderr


def test_401_with_a_token_says_it_was_refused(cli_env: FakeApi) -> None:
    cli_env.on("GET", DESIGN, 401, {"code": "unauthorized", "message": "unknown or revoked"})
    body = only_json(flamectl("-o", "json", "--token", "stale", "get", "design", "x").stderr)
    assert body["code"] == 4 and "refused" in body["hint"] and "--token" in body["hint"]


def test_403_names_the_token_user_from_the_message(cli_env: FakeApi) -> None:
    message = "a token of user 'bob' cannot act for user 'alice'"
    cli_env.on("GET", DESIGN, 403, {"code": "forbidden", "message": message})
    result = flamectl("--token", "t", "get", "design", "x")
    assert result.exit_code == ExitCode.FORBIDDEN
    assert "the token belongs to user 'bob'; flamectl acts as user 'alice'" in result.stderr
    assert cli_env.sent("GET", "/tokens") == []  # the message said it: no lookup


def test_403_looks_up_the_token_user(cli_env: FakeApi) -> None:
    cli_env.on("GET", DESIGN, 403, {"code": "forbidden", "message": "an admin token is required"})
    cli_env.on("GET", "/tokens", body=[{**TOKEN_INFO, "userId": "alice"}])
    body = only_json(flamectl("-o", "json", "--token", "t", "get", "design", "x").stderr)
    assert body["code"] == 5 and body["hint"] == "the token belongs to user 'alice'"


def test_403_without_a_known_user_has_no_hint(cli_env: FakeApi) -> None:
    cli_env.on("GET", DESIGN, 403, {"code": "forbidden", "message": "an admin token is required"})
    cli_env.on("GET", "/tokens", 500, {"code": "internal", "message": "boom"})
    body = only_json(flamectl("-o", "json", "--token", "t", "get", "design", "x").stderr)
    assert body == {"error": "an admin token is required", "code": 5, "kind": "forbidden"}


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["-o", "json", "get", "jobs"], True),
        (["--output=json", "get", "jobs"], True),
        (["-ojson", "get", "jobs"], True),
        (["get", "jobs"], False),
        (["-o", "table", "get", "jobs"], False),
        (["create", "design", "--", "-o", "json"], False),
    ],
)
def test_json_requested(argv: list[str], wanted: bool) -> None:
    assert json_requested(argv) is wanted


def test_usage_error_under_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_app(app, ["-o", "json", "get", "nothing"])
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert only_json(err) == {"error": "No such command 'nothing'.", "code": 2, "kind": "usage"}
