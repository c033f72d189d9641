"""Task config parsing: clear errors naming the field, group resolution, func tags."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from flame_sdk.config import Config, ConfigError
from tests.sdk.helpers import task_config


def test_parses_flame_config_with_defaults(tmp_path: Path) -> None:
    raw = task_config("trainer", "t1", hyperparameters={"batchSize": 32, "rounds": 5})
    raw["channels"][0] = {**raw["channels"][0], "isBidirectional": True, "description": "x"}
    raw["dataset"] = "digits://0/4"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    config = Config.load(path)
    assert config.taskid == "t1" and config.dataset == "digits://0/4"
    assert config.hyperparameters == {"rounds": 5, "epochs": 1, "batchSize": 32}
    assert config.func_tag_map() == {"fetch": "param-channel", "upload": "param-channel"}
    channel = config.channel("param-channel")
    assert config.group_of(channel) == "default"
    assert config.peer_role(channel) == "aggregator"
    assert config.backend_of(channel) == ("local", "")


def test_unidirectional_flag_and_unknown_keys_are_accepted() -> None:
    raw = task_config("trainer", "t1", maxRunTime=300, task="local")
    raw["channels"][0] = {**raw["channels"][0], "isUnidirectional": False}
    assert Config.load(raw).max_run_time == 300


def test_missing_func_tags_for_own_role_is_named() -> None:
    raw = task_config("trainer", "t1")
    raw["channels"][0] = copy.deepcopy(raw["channels"][0])
    del raw["channels"][0]["funcTags"]["trainer"]
    with pytest.raises(
        ConfigError, match=r"channels\[param-channel\]\.funcTags has no entry for role 'trainer'"
    ):
        Config.load(raw)


def test_channel_without_own_role_in_pair() -> None:
    with pytest.raises(
        ConfigError, match=r"pair \['trainer', 'aggregator'\] does not contain role 'coordinator'"
    ):
        Config.load(task_config("coordinator", "c1"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"taskid": ""}, "taskid: required"),
        ({"backend": "grpc"}, "backend: unknown sort 'grpc'"),
        ({"backend": "p2p"}, "brokers: no broker of sort 'p2p'"),
        ({"backend": "rabbitmq"}, "brokers: no broker of sort 'rabbitmq'"),
        (
            {"groupAssociation": {"param-channel": "eu"}},
            r"groupAssociation\[param-channel\] = 'eu'",
        ),
        ({"job": {"id": "x"}}, "job.name"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load({**task_config("trainer", "t1"), **change})


def test_brokers_per_sort_and_channel_override() -> None:
    raw = task_config(
        "trainer",
        "t1",
        backend="rabbitmq",
        brokers=[
            {"sort": "rabbitmq", "host": "amqp://guest:guest@127.0.0.1:5672/"},
            {"sort": "mqtt", "host": "127.0.0.1:1883"},
        ],
    )
    raw["channels"] = [{**raw["channels"][0], "backend": "mqtt", "brokerHost": "broker:1884"}]
    config = Config.load(raw)
    assert config.backend_of(config.channels[0]) == ("mqtt", "broker:1884")
    assert config.broker_of("rabbitmq").startswith("amqp://")


def test_p2p_backend_takes_the_broker_of_its_membership_side() -> None:
    broker = "amqp://guest:guest@127.0.0.1:5672/"
    config = Config.load(
        task_config("trainer", "t1", backend="p2p", brokers=[{"sort": "p2p", "host": broker}])
    )
    assert config.backend_of(config.channels[0]) == ("p2p", broker)


def test_group_association_resolves_and_missing_means_default() -> None:
    raw = task_config("trainer", "t1", groupAssociation={"param-channel": "eu"})
    raw["channels"] = [{**raw["channels"][0], "groupBy": {"type": "tag", "value": ["eu", "na"]}}]
    assert Config.load(raw).group_of(Config.load(raw).channels[0]) == "eu"
    raw["groupAssociation"] = None
    config = Config.load(raw)
    assert config.group_of(config.channels[0]) == "default"


def test_duplicate_func_tag_across_channels_is_an_error() -> None:
    raw = task_config("trainer", "t1")
    raw["channels"] = [raw["channels"][0], {**raw["channels"][0], "name": "other"}]
    with pytest.raises(ConfigError, match="func tag 'fetch'"):
        Config.load(raw).func_tag_map()


def test_per_role_hyperparameter() -> None:
    config = Config.load(
        task_config("aggregator", "a1", hyperparameters={"minEnds": {"aggregator": 3}})
    )
    assert config.hyperparameter("minEnds", 1) == 3
    assert (
        Config.load(
            task_config("trainer", "t1", hyperparameters={"minEnds": {"aggregator": 3}})
        ).hyperparameter("minEnds", 1)
        == 1
    )


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read task config"):
        Config.load(tmp_path / "bad.json")
