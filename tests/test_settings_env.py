"""FlameSettings from FLAME_* variables: any case, JSON for structured fields, arguments first."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flame_common.settings import FlameSettings, SettingsError


def test_variables_of_any_case_set_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_NAMESPACE", "ns1")
    monkeypatch.setenv("flame_log_level", "DEBUG")
    monkeypatch.setenv("FLAME_HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("FLAME_LOG_JSON", "false")
    monkeypatch.setenv("FLAME_NO_SUCH_SETTING", "ignored")
    monkeypatch.setenv("NAMESPACE", "not ours")
    s = FlameSettings()
    assert (s.namespace, s.log_level, s.heartbeat_interval, s.log_json) == (
        "ns1",
        "DEBUG",
        0.5,
        False,
    )
    assert FlameSettings(namespace="given").namespace == "given"  # arguments win


def test_structured_fields_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_DATA_ROOTS", '["/data/a", "/data/b"]')
    monkeypatch.setenv("FLAME_JOB_BROKERS", '[{"sort": "mqtt", "host": "mqtt://m:1883"}]')
    s = FlameSettings()
    assert s.data_roots == [Path("/data/a"), Path("/data/b")]
    assert s.job_brokers == [{"sort": "mqtt", "host": "mqtt://m:1883"}]


def test_bad_values_name_the_variable_or_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_DATA_ROOTS", "[/data")
    with pytest.raises(SettingsError, match="FLAME_DATA_ROOTS is not valid JSON"):
        FlameSettings()
    monkeypatch.setenv("FLAME_DATA_ROOTS", "[]")
    monkeypatch.setenv("FLAME_HEARTBEAT_INTERVAL", "often")
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        FlameSettings()
