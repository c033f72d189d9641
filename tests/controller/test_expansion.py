"""Expansion of the nine Flame example designs, task by task, plus the validation errors of §4.1."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flame_controller.expansion import DatasetRef, code_roles, expand
from schemas.design import DesignSchema
from schemas.errors import Forbidden, Invalid
from schemas.job import Plugin
from schemas.task_config import Broker, Registry
from tests.controller.examples import load_example
from tests.support.zips import make_zip

JOB_ID = "64145f7c10b9b3b94f5252bd"
BROKERS = [Broker(sort="mqtt", host="localhost"), Broker(sort="p2p", host="localhost:10104")]
REGISTRY = Registry(sort="mlflow", uri="http://mlflow.test")
U = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MED = "https://raw.github.com/GaoxiangLuo/flame-datasets/main/"

PM, GL = "param-channel", "global-channel"
TOP, MID, TRN = "top-agg-coord-channel", "middle-agg-coord-channel", "trainer-coord-channel"

# name -> (dataset id -> file, dataSpec override or None, expected tasks in order)
# expected task: (role, groupAssociation, channel names, dataset url, compute id)
EXPECTED: dict[str, tuple[dict[str, str], Any, list[tuple[Any, ...]]]] = {
    "mnist": (
        {"64132c15981345ad7b31da47": "dataset.json"},
        None,
        [
            ("aggregator", {PM: "us"}, [PM], "", "default"),
            ("trainer", {PM: "us"}, [PM], U + "mnist.npz", "compute-1"),
        ],
    ),
    "hier_mnist": (
        {
            "624b4417dad565fc66f8a0ee": "dataset_eu_germany.json",
            "624b4428dad565fc66f8a0ef": "dataset_eu_uk.json",
            "624b4430dad565fc66f8a0f0": "dataset_na_canada.json",
            "624b4437dad565fc66f8a0f1": "dataset_na_us.json",
        },
        None,
        [
            ("middle-aggregator", {GL: "default", PM: "eu"}, [GL, PM], "", "default"),
            ("middle-aggregator", {GL: "default", PM: "na"}, [GL, PM], "", "default"),
            ("top-aggregator", {GL: "default"}, [GL], "", "default"),
            ("trainer", {PM: "eu"}, [PM], U + "mnist_1.npz", "default"),
            ("trainer", {PM: "eu"}, [PM], U + "mnist_2.npz", "default"),
            ("trainer", {PM: "na"}, [PM], U + "mnist_3.npz", "default"),
            ("trainer", {PM: "na"}, [PM], U + "mnist_4.npz", "default"),
        ],
    ),
    "asyncfl_hier_mnist": (
        {
            "64137d8ce5f264999ac9e12d": "dataset_eu_germany.json",
            "64137d8ce5f264999ac9e12e": "dataset_eu_uk.json",
            "64137d8ce5f264999ac9e12f": "dataset_na_canada.json",
            "64137d8ce5f264999ac9e130": "dataset_na_us.json",
        },
        None,
        [
            ("middle-aggregator", {GL: "default", PM: "eu"}, [GL, PM], "", "default"),
            ("middle-aggregator", {GL: "default", PM: "na"}, [GL, PM], "", "default"),
            ("top-aggregator", {GL: "default"}, [GL], "", "default"),
            ("trainer", {PM: "eu"}, [PM], U + "mnist_1.npz", "default"),
            ("trainer", {PM: "eu"}, [PM], U + "mnist_2.npz", "default"),
            ("trainer", {PM: "na"}, [PM], U + "mnist_3.npz", "default"),
            ("trainer", {PM: "na"}, [PM], U + "mnist_4.npz", "default"),
        ],
    ),
    "asyncfl_hier_mnist_lb": (
        {"641c67d9cdf5ab9f13d12321": "dataset_red.json"},
        None,
        [
            ("middle-aggregator", {GL: "black", PM: "red"}, [GL, PM], "", "default"),
            ("middle-aggregator", {GL: "black", PM: "red"}, [GL, PM], "", "default"),
            ("top-aggregator", {GL: "black"}, [GL], "", "default"),
            ("trainer", {PM: "red"}, [PM], U + "mnist_1.npz", "default"),
        ],
    ),
    "distributed_training": (
        {
            "6270770d081ef2787befd972": "dataset_1.json",
            "62707721081ef2787befd973": "dataset_2.json",
            "6270772a081ef2787befd974": "dataset_3.json",
        },
        None,
        [
            ("trainer", {PM: "us"}, [PM], U + "mnist_1.npz", "default"),
            ("trainer", {PM: "us"}, [PM], U + "mnist_2.npz", "default"),
            ("trainer", {PM: "us"}, [PM], U + "mnist_3.npz", "default"),
        ],
    ),
    "medmnist": (
        {
            "629a403622f4715eabf99c5b": "dataset1.json",
            "629a404422f4715eabf99c5c": "dataset2.json",
            "629a404b22f4715eabf99c5d": "dataset3.json",
            "629a405422f4715eabf99c5e": "dataset4.json",
            "629a405d22f4715eabf99c5f": "dataset5.json",
            "629a406422f4715eabf99c60": "dataset6.json",
            "629a406c22f4715eabf99c61": "dataset7.json",
            "629a407322f4715eabf99c62": "dataset8.json",
            "629a407a22f4715eabf99c63": "dataset9.json",
            "629a408022f4715eabf99c64": "dataset10.json",
        },
        None,
        [("aggregator", {PM: "us"}, [PM], "", "default")]
        + [("trainer", {PM: "us"}, [PM], f"{MED}site{i}.npz", "default") for i in range(1, 11)],
    ),
    "parallel_experiment": (
        {
            "6261a0541bf79323fd13a4e9": "dataset_asia_china.json",
            "6261a05d1bf79323fd13a4ea": "dataset_eu_uk.json",
            "6261a0651bf79323fd13a4eb": "dataset_us_west.json",
        },
        None,
        [
            ("aggregator", {PM: "us"}, [PM], "", "default"),
            ("aggregator", {PM: "eu"}, [PM], "", "default"),
            ("aggregator", {PM: "asia"}, [PM], "", "default"),
            ("trainer", {PM: "asia"}, [PM], U + "mnist_5.npz", "default"),
            ("trainer", {PM: "eu"}, [PM], U + "mnist_2.npz", "default"),
            ("trainer", {PM: "us"}, [PM], U + "mnist_4.npz", "compute-1"),
        ],
    ),
    "hybrid": (
        {
            "641dad83843b4d449a827464": "dataset1.json",
            "641dad83843b4d449a827465": "dataset2.json",
            "641dad83843b4d449a827466": "dataset3.json",
            "641dad83843b4d449a827467": "dataset4.json",
        },
        # The example's dataSpec.json is not valid JSON; this is what it means.
        [
            {
                "role": "trainer",
                "datasetGroups": {
                    "eu": ["641dad83843b4d449a827464", "641dad83843b4d449a827465"],
                    "us": ["641dad83843b4d449a827466", "641dad83843b4d449a827467"],
                },
            }
        ],
        [
            ("aggregator", {GL: "default"}, [GL], "", "default"),
            ("trainer", {PM: "eu", GL: "default"}, [GL, PM], U + "mnist_1.npz", "eu1"),
            ("trainer", {PM: "eu", GL: "default"}, [GL, PM], U + "mnist_2.npz", "default"),
            ("trainer", {PM: "us", GL: "default"}, [GL, PM], U + "mnist_3.npz", "default"),
            ("trainer", {PM: "us", GL: "default"}, [GL, PM], U + "mnist_4.npz", "default"),
        ],
    ),
    "syncfl_hier_coord_mnist": (
        {
            "642a3918b8cf45525b13481c": "dataset1.json",
            "642a391cb8cf45525b13481d": "dataset2.json",
            "642a391eb8cf45525b13481e": "dataset3.json",
        },
        None,
        [
            (
                "coordinator",
                {TOP: "default", MID: "default", TRN: "default"},
                [MID, TOP, TRN],
                "",
                "default",
            ),
            (
                "middle-aggregator",
                {MID: "default", PM: "default", GL: "default"},
                [GL, MID, PM],
                "",
                "default",
            ),
            (
                "middle-aggregator",
                {MID: "default", PM: "default", GL: "default"},
                [GL, MID, PM],
                "",
                "default",
            ),
            ("top-aggregator", {TOP: "default", GL: "default"}, [GL, TOP], "", "default"),
            ("trainer", {TRN: "default", PM: "default"}, [PM, TRN], U + "mnist_1.npz", "default"),
            ("trainer", {TRN: "default", PM: "default"}, [PM, TRN], U + "mnist_2.npz", "default"),
            ("trainer", {TRN: "default", PM: "default"}, [PM, TRN], U + "mnist_3.npz", "default"),
        ],
    ),
}


def _expand(name: str, job_id: str = JOB_ID) -> tuple[Any, list[Any]]:
    files, data_spec, _ = EXPECTED[name]
    ex = load_example(name, files, data_spec)
    spec = ex.job_spec(job_id)
    tasks = expand(
        spec, ex.schema, code_roles(ex.code_zip()), ex.datasets, brokers=BROKERS, registry=REGISTRY
    )
    return spec, tasks


def test_all_nine_examples_are_covered() -> None:
    from tests.controller.examples import EXAMPLES

    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_expands_task_by_task(name: str) -> None:
    spec, tasks = _expand(name)
    expected = EXPECTED[name][2]
    assert len(tasks) == len(expected)
    for i, (task, (role, assoc, channels, dataset, compute)) in enumerate(
        zip(tasks, expected, strict=True)
    ):
        where = f"{name} task {i + 1}"
        assert task.role == role, where
        assert task.group_association == assoc, where
        assert task.compute_id == compute, where
        assert task.dataset == dataset, where
        wire = task.config.to_wire()
        assert [c["name"] for c in wire["channels"]] == channels, where
        assert wire["role"] == role and wire["groupAssociation"] == assoc, where
        assert wire.get("dataset", "") == dataset, where
        assert wire["job"] == {"id": JOB_ID, "name": spec.design_id}, where
        assert wire["realm"] == "" and wire["backend"] == spec.backend, where
        assert wire["maxRunTime"] == spec.max_run_time, where
        assert wire["brokers"] == [b.wire() for b in BROKERS], where
        assert wire["registry"] == REGISTRY.wire(), where
        assert wire["hyperparameters"] == spec.model_spec.hyperparameters, where
        assert re.fullmatch(r"[0-9a-f]{40}", task.task_id), where
    assert len({t.task_id for t in tasks}) == len(tasks)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_ids_are_deterministic_per_job(name: str) -> None:
    _, first = _expand(name)
    _, again = _expand(name)
    _, other = _expand(name, job_id="0" * 24)
    assert [t.task_id for t in first] == [t.task_id for t in again]
    assert not {t.task_id for t in first} & {t.task_id for t in other}


def test_mnist_trainer_config_matches_flame_wire_format() -> None:
    _, tasks = _expand("mnist")
    assert tasks[1].config.to_wire() == {
        "backend": "mqtt",
        "brokers": [
            {"sort": "mqtt", "host": "localhost"},
            {"sort": "p2p", "host": "localhost:10104"},
        ],
        "registry": {"sort": "mlflow", "uri": "http://mlflow.test"},
        "job": {"id": JOB_ID, "name": "mnist"},
        "role": "trainer",
        "realm": "",
        "channels": [
            {
                "name": "param-channel",
                "description": "Model update is sent from trainer to aggregator and vice-versa",
                "pair": ["trainer", "aggregator"],
                "groupBy": {"type": "tag", "value": ["us"]},
                "funcTags": {
                    "trainer": ["fetch", "upload"],
                    "aggregator": ["distribute", "aggregate"],
                },
            }
        ],
        "groupAssociation": {"param-channel": "us"},
        "maxRunTime": 1800,
        "baseModel": {"version": 1},
        "optimizer": {},
        "selector": {"sort": "random", "kwargs": {"k": 1}},
        "hyperparameters": {"rounds": 5, "batchSize": 32, "learningRate": 0.01},
        "dependencies": ["numpy >= 1.2.0"],
        "dataset": U + "mnist.npz",
    }


def test_privacy_and_datasampler_of_the_model_spec_reach_every_task() -> None:
    files, data_spec, _ = EXPECTED["mnist"]
    ex = load_example("mnist", files, data_spec)
    spec = ex.job_spec(JOB_ID)
    model = spec.model_spec.model_copy(
        update={
            "privacy": Plugin(sort="dp", kwargs={"clip_threshold": 1.0, "noise_factor": 0.1}),
            "datasampler": Plugin(sort="fedbalancer", kwargs={"w": 5}),
        }
    )
    tasks = expand(
        spec.model_copy(update={"model_spec": model}),
        ex.schema,
        code_roles(ex.code_zip()),
        ex.datasets,
        brokers=BROKERS,
        registry=REGISTRY,
    )
    for task in tasks:
        wire = task.config.to_wire()
        assert wire["privacy"] == {
            "sort": "dp",
            "kwargs": {"clip_threshold": 1.0, "noise_factor": 0.1},
        }
        assert wire["datasampler"] == {"sort": "fedbalancer", "kwargs": {"w": 5}}


def test_hybrid_channels_keep_their_per_channel_backend() -> None:
    _, tasks = _expand("hybrid")
    backends = {c.name: c.backend for c in tasks[1].config.channels}
    assert backends == {GL: "mqtt", PM: "p2p"}


def test_replicas_have_identical_configs_but_distinct_ids() -> None:
    _, tasks = _expand("asyncfl_hier_mnist_lb")
    assert tasks[0].config == tasks[1].config
    assert tasks[0].task_id != tasks[1].task_id


# --- validation (§4.1 pre-checks, with the reference's bugs fixed) -------------------------------


def _mnist(**spec_changes: Any) -> tuple[Any, DesignSchema, dict[str, DatasetRef]]:
    files, data_spec, _ = EXPECTED["mnist"]
    ex = load_example("mnist", files, data_spec)
    spec = ex.job_spec(JOB_ID).model_copy(update=spec_changes)
    return spec, ex.schema, ex.datasets


def _schema(**changes: Any) -> DesignSchema:
    _, schema, _ = _mnist()
    data = schema.wire()
    data.update(changes)
    return DesignSchema.model_validate(data)


ROLES = frozenset({"trainer", "aggregator"})


def _error(exc_type: type[Exception], *args: Any) -> str:
    with pytest.raises(exc_type) as info:
        expand(*args)
    return str(info.value)


def test_no_data_consumer_role() -> None:
    spec, schema, datasets = _mnist()
    roles = [r.model_copy(update={"is_data_consumer": False}) for r in schema.roles]
    bad = schema.model_copy(update={"roles": roles})
    assert (
        _error(Invalid, spec, bad, ROLES, datasets)
        == "no data consumer role found in the design schema"
    )


def test_no_code_for_role() -> None:
    spec, schema, datasets = _mnist()
    msg = _error(Invalid, spec, schema, frozenset({"aggregator"}), datasets)
    assert msg == "no code found for role trainer"


def test_channel_naming_unknown_role() -> None:
    spec, _, datasets = _mnist()
    data = _schema().wire()
    data["channels"][0]["pair"] = ["trainer", "ghost"]
    schema = DesignSchema.model_validate(data)
    msg = _error(Invalid, spec, schema, ROLES, datasets)
    assert "channel 'param-channel' names unknown role 'ghost'" in msg


def test_data_spec_without_groups() -> None:
    spec, schema, datasets = _mnist()
    spec = spec.model_copy(
        update={"data_spec": [spec.data_spec[0].model_copy(update={"dataset_groups": {}})]}
    )
    msg = _error(Invalid, spec, schema, ROLES, datasets)
    assert msg == "no dataset group specified for data-consumer role trainer"


def test_data_spec_with_empty_group() -> None:
    spec, schema, datasets = _mnist()
    entry = spec.data_spec[0].model_copy(update={"dataset_groups": {"us": []}})
    spec = spec.model_copy(update={"data_spec": [entry]})
    assert (
        _error(Invalid, spec, schema, ROLES, datasets)
        == "no dataset specified for role trainer, group us"
    )


def test_missing_dataset() -> None:
    spec, schema, _ = _mnist()
    assert _error(Invalid, spec, schema, ROLES, {}) == "dataset 64132c15981345ad7b31da47 not found"


def test_private_dataset_of_another_user_is_forbidden_but_own_is_fine() -> None:
    spec, schema, _ = _mnist()
    ds_id = "64132c15981345ad7b31da47"
    private = DatasetRef(ds_id, "mallory", "file:///secret", "default", is_public=False)
    msg = _error(Forbidden, spec, schema, ROLES, {ds_id: private})
    assert msg == f"dataset {ds_id} is private to another user"
    own = DatasetRef(ds_id, spec.user_id, "file:///mine", "default", is_public=False)
    tasks = expand(spec, schema, ROLES, {ds_id: own})
    assert tasks[1].dataset == "file:///mine"


def test_data_spec_for_a_role_that_is_not_a_data_consumer() -> None:
    spec, schema, datasets = _mnist()
    entry = spec.data_spec[0].model_copy(update={"role": "aggregator"})
    spec = spec.model_copy(update={"data_spec": [entry]})
    msg = _error(Invalid, spec, schema, ROLES, datasets)
    assert msg == "dataSpec names role aggregator, which is not a data-consumer role"


def test_job_without_any_dataset_is_invalid() -> None:
    spec, schema, datasets = _mnist(data_spec=[])
    msg = _error(Invalid, spec, schema, ROLES, datasets)
    assert msg == "the dataSpec gives no dataset to any data-consumer role"


def test_group_without_matching_association_gets_none() -> None:
    spec, schema, datasets = _mnist()
    entry = spec.data_spec[0].model_copy(
        update={"dataset_groups": {"uk": ["64132c15981345ad7b31da47"]}}
    )
    tasks = expand(spec.model_copy(update={"data_spec": [entry]}), schema, ROLES, datasets)
    assert tasks[1].group_association is None
    assert tasks[1].config.to_wire()["groupAssociation"] is None


def test_non_data_role_without_association_yields_no_task_and_empty_groupby_gets_default() -> None:
    spec, _, datasets = _mnist()
    data = _schema().wire()
    data["roles"][1]["groupAssociation"] = []
    data["channels"][0]["groupBy"] = {"type": "tag", "value": []}
    tasks = expand(spec, DesignSchema.model_validate(data), ROLES, datasets)
    assert [t.role for t in tasks] == ["trainer"]
    assert tasks[0].config.channels[0].group_by.value == ["default"]


def test_code_roles_are_top_level_directories() -> None:
    names = ["trainer/main.py", "trainer/lib/a.py", "aggregator/main.py"]
    assert code_roles(make_zip(dict.fromkeys(names, "x"))) == {"trainer", "aggregator"}


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["main.py", "trainer/main.py"], "file outside any role directory: 'main.py'"),
        (["../evil/main.py"], "unsafe path"),
        (["/abs/main.py"], "unsafe path"),
    ],
)
def test_code_zip_errors(names: list[str], message: str) -> None:
    with pytest.raises(Invalid, match=re.escape(message)):
        code_roles(make_zip(dict.fromkeys(names, "x")))


def test_code_that_is_not_a_zip() -> None:
    with pytest.raises(Invalid, match="not a valid zip"):
        code_roles(b"not a zip")
