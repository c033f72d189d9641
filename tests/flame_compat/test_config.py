"""`flame.config.Config` reads the task config our agent writes, with Flame's spellings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flame.config import Config, Hyperparameters, as_flame_config
from flame_sdk.config import Config as SdkConfig
from flame_sdk.config import ConfigError
from flame_sdk.simulation.expand import JobOverrides, expand

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flame_style" / "syncfl"


def _written_config(tmp_path: Path, role: str) -> Path:
    """A task config as flamelet writes it: the job's task config plus `taskid`."""
    wire = next(w for w in expand(EXAMPLE, JobOverrides(job_id="j1")) if w["role"] == role)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(wire))
    return path


def test_config_reads_the_agents_file_with_flames_attribute_names(tmp_path: Path) -> None:
    config = Config(_written_config(tmp_path, "trainer"))
    assert isinstance(config, SdkConfig)
    hp = config.hyperparameters
    assert isinstance(hp, Hyperparameters)
    assert (hp.rounds, hp.epochs, hp.batch_size, hp.learning_rate) == (10, 2, 32, 0.1)
    assert hp.aggregation_goal is None  # optional in Flame's schema
    assert hp["batchSize"] == 32  # still the mapping our roles read
    assert config.task_id == config.taskid != ""
    assert config.dataset.startswith("digits://")
    with pytest.raises(AttributeError):
        _ = hp.no_such_hyperparameter


def test_per_role_values_and_conversion_from_the_sdk_config(tmp_path: Path) -> None:
    wire = json.loads(_written_config(tmp_path, "aggregator").read_text())
    sdk = SdkConfig.load(wire)
    config = as_flame_config(sdk)
    assert type(config) is Config
    assert config.hyperparameters.minEnds == 4  # {"aggregator": 4} read for this role
    assert as_flame_config(config) is config


def test_an_unreadable_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json"):
        Config(tmp_path / "missing.json")
