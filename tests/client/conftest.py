"""Fixtures of the client/CLI tests: a fake apiserver and a flamectl runner wired to it."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from flame_sdk.cli import runtime
from flame_sdk.client import FlameClient
from tests.client.fakes import FakeApi

ENDPOINT = "http://flame.test:10100"
USER = "alice"


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> FlameClient:
    return FlameClient(ENDPOINT, USER, transport=api.transport())


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, api: FakeApi, tmp_path: Path) -> FakeApi:
    """flamectl talks to the fake apiserver; no real config file or FLAME_* variable is read."""
    for name in ("FLAME_CONFIG", "FLAME_APISERVER", "FLAME_USER", "FLAME_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLAME_APISERVER", ENDPOINT)
    monkeypatch.setenv("FLAME_USER", USER)
    monkeypatch.setattr(
        runtime, "FlameClient", functools.partial(FlameClient, transport=api.transport())
    )
    return api
