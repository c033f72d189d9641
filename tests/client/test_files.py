"""User files: job.json with dataSpecPath/modelSpecPath, `//` comments in every kind, code zips."""

from __future__ import annotations

import io
import json
import re
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
from schemas.errors import BadRequest, Invalid
from tests.comments import CASES, MNIST, Where, add_key, case_id, dotted, example_dir


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
        },
    )
    spec = load_job_file(job)
    assert spec.data_spec[0].dataset_groups == {"g": ["d"]}
    assert spec.model_spec.hyperparameters == {"rounds": 2}
    assert spec.max_run_time == 600


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


def _load(root: Path, file: str) -> object:
    """What flamectl sends for `file`: the schema, the dataset, or the job with both specs."""
    if file == "schema.json":
        return load_schema_file(root / file)
    if file == "dataset.json":
        return load_dataset_file(root / file)
    return load_job_file(root / "job.json")


@pytest.mark.parametrize(("file", "where"), CASES, ids=[case_id(*c) for c in CASES])
def test_comment_keys_are_ignored(tmp_path: Path, file: str, where: Where) -> None:
    plain = _load(example_dir(tmp_path / "plain", file, where), file)
    root = example_dir(tmp_path / "commented", file, where)
    add_key(root / file, where, "//")
    add_key(root / file, where, "// license: Apache-2.0")
    assert _load(root, file) == plain


@pytest.mark.parametrize(("file", "where"), CASES, ids=[case_id(*c) for c in CASES])
def test_other_unknown_keys_are_refused_by_name(tmp_path: Path, file: str, where: Where) -> None:
    root = example_dir(tmp_path, file, where)
    add_key(root / file, where, "//")
    add_key(root / file, where, "isPubic")
    expected = f"{file}: unknown field '{dotted(where, 'isPubic')}'"
    with pytest.raises(Invalid, match=re.escape(expected) + "$"):
        _load(root, file)


def test_dataset_update_file_comments_and_typos(tmp_path: Path) -> None:
    update = load_dataset_update_file(write(tmp_path / "upd.json", {"//": "x", "name": "new"}))
    assert update.wire(exclude_none=True) == {"name": "new"}
    write(tmp_path / "upd.json", {"//": "x", "name": "new", "a//b": 1})
    with pytest.raises(Invalid, match=r"upd\.json: unknown field 'a//b'$"):
        load_dataset_update_file(tmp_path / "upd.json")


def test_dataset_file_requires_its_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "ds.json", {"name": "n", "url": "u"})
    with pytest.raises(Invalid, match=r"ds\.json: field 'dataFormat'.*field 'realm'"):
        load_dataset_file(path)


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
