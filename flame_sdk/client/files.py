"""Flame's user files: job (dataSpecPath/modelSpecPath), schema and dataset JSON, code zips."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.dataset import DatasetInfo, DatasetUpdate
from schemas.design import DesignSchema
from schemas.errors import BadRequest, Invalid
from schemas.job import JobSpec, ModelSpec, RoleDatasetGroups

M = TypeVar("M", bound=BaseModel)

_SKIPPED_NAMES = {"__pycache__", ".DS_Store"}


def read_bytes(path: Path) -> bytes:
    """The content of a file; BadRequest names the file when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def read_json(path: Path) -> Any:
    """Decode one JSON file; BadRequest names the file and what is wrong with it."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path}: not UTF-8 text") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def describe(error: ValidationError) -> str:
    """`unknown field 'x'; field 'y': problem` from a pydantic error (wire field names)."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown field '{loc}'")
        else:
            parts.append(f"field '{loc}': {item['msg']}" if loc else item["msg"])
    return "; ".join(parts)


def parse(annotation: Any, data: Any, source: Path) -> Any:
    """Validate `data` against `annotation` (`//` comment keys dropped, any other unknown key
    refused); Invalid names the file and each bad field."""
    try:
        return TypeAdapter(annotation).validate_python(data)
    except ValidationError as exc:
        raise Invalid(f"{source}: {describe(exc)}") from exc


def load_model(model: type[M], path: Path) -> M:
    """One JSON file as `model`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a JSON object, found {type(data).__name__}")
    result: M = parse(model, data, path)
    return result


def load_schema_file(path: Path) -> DesignSchema:
    return load_model(DesignSchema, Path(path))


def load_dataset_file(path: Path) -> DatasetInfo:
    return load_model(DatasetInfo, Path(path))


def load_dataset_update_file(path: Path) -> DatasetUpdate:
    return load_model(DatasetUpdate, Path(path))


def load_job_file(path: Path) -> JobSpec:
    """Flame's job.json: spec fields plus `dataSpecPath`/`modelSpecPath` relative to the job file.

    Inline `dataSpec`/`modelSpec` are accepted as well, but not together with the path key.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a JSON object, found {type(data).__name__}")
    parts: dict[str, Any] = {}
    for key, path_key, annotation in (
        ("dataSpec", "dataSpecPath", list[RoleDatasetGroups]),
        ("modelSpec", "modelSpecPath", ModelSpec),
    ):
        ref = data.pop(path_key, None)
        if ref is None:
            continue
        if key in data:
            raise Invalid(f"{path}: give either '{key}' or '{path_key}', not both")
        if not isinstance(ref, str) or not ref:
            raise Invalid(f"{path}: field '{path_key}' must be a file path")
        part_path = path.parent / ref
        parts[key] = parse(annotation, read_json(part_path), part_path)
    spec: JobSpec = parse(JobSpec, data, path)
    return spec.model_copy(update={_field(k): v for k, v in parts.items()})


def _field(alias: str) -> str:
    return next(n for n, f in JobSpec.model_fields.items() if f.alias == alias)


def zip_code(directory: Path) -> bytes:
    """Zip a code directory: one top-level folder per role (`trainer/main.py`, ...)."""
    root = Path(directory)
    if not root.is_dir():
        raise BadRequest(f"{root}: not a directory")
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(root.rglob("*")):
            rel = file.relative_to(root)
            if not file.is_file() or _SKIPPED_NAMES & set(rel.parts) or file.suffix == ".pyc":
                continue
            if len(rel.parts) == 1:
                raise Invalid(
                    f"{root}: file '{rel}' is at the top level; every file must be in a role folder"
                )
            archive.write(file, rel.as_posix())
            count += 1
    if count == 0:
        raise Invalid(f"{root}: no files to upload")
    return buffer.getvalue()
