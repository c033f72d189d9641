"""User files: job.json with dataSpecPath/modelSpecPath, lenient dataset/schema files, code zips."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from flame_sdk.client import (
    load_dataset_file,
    load_dataset_update_file,
    load_job_file,
    load_schema_file,
    zip_code,
)
from flame_sdk.client.lenient import prune
from schemas.design import DesignSchema
from schemas.errors import BadRequest, Invalid

MNIST = Path(__file__).parents[1] / "data" / "flame_examples" / "mnist"


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_mnist_job_file_assembles_the_spec() -> None:
    spec = load_job_file(MNIST / "job.json")
    assert (spec.name, spec.design_id, spec.backend, spec.max_run_time) == (
        "mnist example",
        "mnist",
        "mqtt",
        1800,
    )
    assert spec.data_spec[0].role == "trainer"
    assert spec.data_spec[0].dataset_groups == {"us": ["64132c15981345ad7b31da47"]}
    assert spec.model_spec.hyperparameters["rounds"] == 5
    assert spec.model_spec.selector.kwargs == {"k": 1}
    assert "dataSpecPath" not in spec.wire()


def test_spec_paths_are_relative_to_the_job_file(tmp_path: Path) -> None:
    write(tmp_path / "jobs" / "specs" / "data.json", [{"role": "t", "datasetGroups": {"g": ["d"]}}])
    write(tmp_path / "jobs" / "specs" / "model.json", {"hyperparameters": {"rounds": 2}})
    job = write(
        tmp_path / "jobs" / "job.json",
        {
            "name": "j",
            "designId": "d",
            "backend": "mqtt",
            "dataSpecPath": "specs/data.json",
            "modelSpecPath": "specs/model.json",
            "schemaVersion": "1",
        },
    )
    seen: list[tuple[Path, str]] = []
    spec = load_job_file(job, lambda f, k: seen.append((f, k)))
    assert spec.data_spec[0].dataset_groups == {"g": ["d"]}
    assert spec.model_spec.hyperparameters == {"rounds": 2}
    assert spec.max_run_time == 600
    assert seen == [(job, "schemaVersion")]


def test_missing_spec_file_is_named(tmp_path: Path) -> None:
    shutil.copy(MNIST / "job.json", tmp_path / "job.json")
    with pytest.raises(BadRequest, match=r"dataSpec\.json: cannot read the file"):
        load_job_file(tmp_path / "job.json")


def test_bad_model_spec_names_file_and_field(tmp_path: Path) -> None:
    shutil.copy(MNIST / "job.json", tmp_path / "job.json")
    shutil.copy(MNIST / "dataSpec.json", tmp_path / "dataSpec.json")
    write(tmp_path / "modelSpec.json", {"hyperparameters": "fast"})
    with pytest.raises(Invalid, match=r"modelSpec\.json: field 'hyperparameters'"):
        load_job_file(tmp_path / "job.json")


def test_job_file_errors_name_the_field(tmp_path: Path) -> None:
    job = write(tmp_path / "job.json", {"name": "j", "backend": "mqtt"})
    with pytest.raises(Invalid, match=r"job\.json: field 'designId': Field required"):
        load_job_file(job)
    write(
        job, {"name": "j", "designId": "d", "backend": "mqtt", "dataSpec": [], "dataSpecPath": "x"}
    )
    with pytest.raises(Invalid, match="either 'dataSpec' or 'dataSpecPath'"):
        load_job_file(job)
    write(job, '{"name": "j",\n "designId": }')
    with pytest.raises(BadRequest, match=r"job\.json: not valid JSON: .*line 2"):
        load_job_file(job)
    write(job, "[1, 2]")
    with pytest.raises(Invalid, match="expected a JSON object, found list"):
        load_job_file(job)


def test_dataset_file_drops_comment_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ds.json",
        {"//": "comment", "name": "n", "url": "file:///d", "dataFormat": "npy", "realm": "default"},
    )
    dropped: list[str] = []
    dataset = load_dataset_file(path, lambda _f, key: dropped.append(key))
    assert (dataset.name, dataset.url, dataset.realm) == ("n", "file:///d", "default")
    assert dropped == ["//"]
    update = load_dataset_update_file(write(tmp_path / "upd.json", {"//": "x", "name": "new"}))
    assert update.wire(exclude_none=True) == {"name": "new"}


def test_dataset_file_requires_its_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "ds.json", {"name": "n", "url": "u"})
    with pytest.raises(Invalid, match=r"ds\.json: field 'dataFormat'.*field 'realm'"):
        load_dataset_file(path)


def test_schema_file_drops_nested_unknown_keys(tmp_path: Path) -> None:
    data = json.loads((MNIST / "schema.json").read_text())
    data["channels"][0]["comment"] = "not in the model"
    data["roles"][1]["//"] = "note"
    dropped: list[str] = []
    schema = load_schema_file(write(tmp_path / "s.json", data), lambda _f, k: dropped.append(k))
    assert [r.name for r in schema.roles] == ["trainer", "aggregator"]
    assert schema.channels[0].func_tags["trainer"] == ["fetch", "upload"]
    assert sorted(dropped) == ["channels[0].comment", "roles[1].//"]


def test_prune_keeps_free_form_dicts() -> None:
    cleaned, dropped = prune(
        DesignSchema,
        {
            "roles": [],
            "channels": [],
            "connectors": [{"name": "c", "connection": {"anything": {"goes": 1}}, "bogus": 1}],
        },
    )
    assert cleaned["connectors"][0]["connection"] == {"anything": {"goes": 1}}
    assert dropped == ["connectors[0].bogus"]


def test_zip_code_packs_role_folders(tmp_path: Path) -> None:
    write(tmp_path / "code" / "trainer" / "main.py", "print('t')")
    write(tmp_path / "code" / "aggregator" / "main.py", "print('a')")
    write(tmp_path / "code" / "aggregator" / "__pycache__" / "main.cpython-311.pyc", "x")
    with zipfile.ZipFile(io.BytesIO(zip_code(tmp_path / "code"))) as archive:
        assert sorted(archive.namelist()) == ["aggregator/main.py", "trainer/main.py"]
        assert archive.read("trainer/main.py") == b"print('t')"


def test_zip_code_rejects_files_outside_role_folders(tmp_path: Path) -> None:
    write(tmp_path / "code" / "main.py", "x")
    with pytest.raises(Invalid, match=r"'main\.py' is at the top level"):
        zip_code(tmp_path / "code")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Invalid, match="no files"):
        zip_code(tmp_path / "empty")
    with pytest.raises(BadRequest, match="not a directory"):
        zip_code(tmp_path / "missing")
