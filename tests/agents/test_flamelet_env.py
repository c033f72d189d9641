"""The flamelet's environment carries the stack's data roots (role code reads `file://` data)."""

from __future__ import annotations

import json
from pathlib import Path

from flame_common.settings import FlameSettings
from flame_controller.deployers.local import flamelet_env


def test_the_data_roots_reach_the_flamelet(tmp_path: Path) -> None:
    settings = FlameSettings(home=tmp_path, data_roots=[tmp_path / "data"], log_json=False)
    env = flamelet_env(settings, "key")
    assert json.loads(env["FLAME_DATA_ROOTS"]) == [str(tmp_path / "data")]
    assert "FLAME_DATA_ROOTS" not in flamelet_env(
        FlameSettings(home=tmp_path, data_roots=[], log_json=False), "key"
    )
