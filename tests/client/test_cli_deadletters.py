"""`flamectl get deadletters` against a fake apiserver: table, JSON, empty."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flame_sdk.cli.app import app
from tests.client.fakes import FakeApi

LETTER = {
    "message_id": "e1",
    "routing_key": "task.status_changed",
    "queue": "flame.controller.events",
    "reason": "delivery_limit",
    "count": 1,
    "dead_lettered_at": "2026-01-02T03:04:05Z",
    "body": "{}",
}


def test_get_deadletters_table_json_and_empty(cli_env: FakeApi) -> None:
    cli_env.on("GET", "/deadletters", body=[LETTER])
    table = CliRunner().invoke(app, ["get", "deadletters", "-l", "7"])
    assert table.exit_code == 0, table.stdout
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["MESSAGE", "ID", "ROUTING"]
    assert row.split()[:4] == [
        "e1",
        "task.status_changed",
        "flame.controller.events",
        "delivery_limit",
    ]
    assert cli_env.requests[0].url.params["limit"] == "7"
    as_json = json.loads(CliRunner().invoke(app, ["-o", "json", "get", "deadletters"]).stdout)
    assert as_json[0]["message_id"] == "e1" and as_json[0]["reason"] == "delivery_limit"
    cli_env.on("GET", "/deadletters", body=[])
    assert "No dead letters" in CliRunner().invoke(app, ["get", "deadletters"]).stdout
