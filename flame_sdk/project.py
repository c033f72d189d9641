"""A design folder (schema.json, job.json, role folders, `<name>.json` datasets) registered and run
as one job: the logic behind `flamectl run` and dataset names in `flamectl create job`."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_sdk.client.client import FlameClient
from flame_sdk.client.files import load_dataset_file, load_job_file, load_schema_file
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.errors import BadRequest, Conflict, Invalid, NotFound
from schemas.job import JobSpec, ModelSpec, RoleDatasetGroups

_SKIPPED = {"__pycache__", ".DS_Store"}


@dataclass(frozen=True)
class Project:
    """What a design folder holds: its TAG, its job (dataSpec names unresolved), its folder."""

    folder: Path
    schema: DesignSchema
    job: JobSpec

    @property
    def roles(self) -> list[str]:
        return [r.name for r in self.schema.roles]


@dataclass
class Registration:
    """What `register` did: the design, its revisions, every dataset name's id, what was reused."""

    design_id: str
    schema_revision: int = 0
    code_revision: int = 0
    datasets: dict[str, str] = field(default_factory=dict)
    reused: set[str] = field(default_factory=set)  # "design", "schema", "code", dataset names

    def wire(self) -> dict[str, Any]:
        return {
            "designId": self.design_id,
            "schemaRevision": self.schema_revision,
            "codeRevision": self.code_revision,
            "datasets": dict(self.datasets),
            "reused": sorted(self.reused),
        }


def load_project(folder: Path) -> Project:
    """Read `folder`'s schema.json and job.json; BadRequest names what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadRequest(f"{folder}: not a directory (expected a design folder like examples/…)")
    for name in ("schema.json", "job.json"):
        if not (folder / name).is_file():
            raise BadRequest(f"{folder}: no {name} (a design folder holds schema.json, job.json)")
    schema = load_schema_file(folder / "schema.json")
    for role in schema.roles:
        if not (folder / role.name).is_dir():
            raise BadRequest(
                f"{folder}: no folder '{role.name}/' for role '{role.name}' of schema.json"
            )
    return Project(folder, schema, load_job_file(folder / "job.json"))


def role_code(folder: Path, roles: list[str]) -> dict[str, bytes]:
    """The files of each role folder, by zip path (`trainer/main.py`); caches skipped."""
    files: dict[str, bytes] = {}
    for role in roles:
        base = Path(folder) / role
        if not base.is_dir():
            raise BadRequest(f"{folder}: no folder '{role}/' for role '{role}'")
        for file in sorted(base.rglob("*")):
            rel = file.relative_to(folder)
            if file.is_file() and not _SKIPPED & set(rel.parts) and file.suffix != ".pyc":
                files[rel.as_posix()] = file.read_bytes()
    return files


def zip_files(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def unzip_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def design_code(folder: Path) -> bytes:
    """The code zip of a design folder: the folders of its schema.json's roles."""
    schema = load_schema_file(Path(folder) / "schema.json")
    return zip_files(role_code(folder, [r.name for r in schema.roles]))


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` overrides (VALUE parsed as JSON when it is JSON; dots in KEY nest)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise BadRequest(f"--set expects KEY=VALUE (e.g. rounds=2), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise BadRequest(f"--set {item!r}: '{part}' is set to a value already")
        target[leaf] = value
    return out


def with_hyperparameters(spec: JobSpec, overrides: dict[str, Any]) -> JobSpec:
    """`spec` with its modelSpec hyperparameters updated (nested dicts merged)."""
    if not overrides:
        return spec
    merged = _merge(dict(spec.model_spec.hyperparameters), overrides)
    try:
        model = ModelSpec.model_validate({**spec.model_spec.wire(), "hyperparameters": merged})
    except ValueError as exc:
        raise Invalid(f"--set: {exc}") from exc
    return spec.model_copy(update={"model_spec": model})


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def dataset_names(spec: JobSpec) -> list[str]:
    """Every dataset entry of the job's dataSpec, in order, once."""
    seen: dict[str, None] = {}
    for entry in spec.data_spec:
        for names in entry.dataset_groups.values():
            seen.update(dict.fromkeys(names))
    return list(seen)


async def resolve_datasets(
    client: FlameClient, spec: JobSpec, folder: Path, *, register: bool
) -> tuple[JobSpec, Registration]:
    """Replace each dataSpec entry that names a `<name>.json` in `folder` by the id of the user's
    dataset with that file's URL (registered first when `register`; else NotFound says how).
    Entries without such a file are kept as they are (dataset ids)."""
    found = Registration(spec.design_id)
    files = {n: Path(folder) / f"{n}.json" for n in dataset_names(spec)}
    files = {n: p for n, p in files.items() if p.is_file()}
    if not files:
        return spec, found
    mine = {d.url: d.id for d in await client.datasets.list(limit=10_000)}
    for name, path in files.items():
        dataset = load_dataset_file(path)
        if dataset.url in mine:
            found.reused.add(name)
        elif register:
            mine[dataset.url] = await _create_dataset(client, dataset)
        else:
            raise NotFound(
                f"dataset '{name}' of the dataSpec ({path}, url {dataset.url}) is not registered "
                f"(register it first: flamectl create dataset {path})"
            )
        found.datasets[name] = mine[dataset.url]
    data_spec = [
        RoleDatasetGroups(
            role=entry.role,
            dataset_groups={
                group: [found.datasets.get(n, n) for n in names]
                for group, names in entry.dataset_groups.items()
            },
        )
        for entry in spec.data_spec
    ]
    return spec.model_copy(update={"data_spec": data_spec}), found


async def _create_dataset(client: FlameClient, dataset: DatasetInfo) -> str:
    try:
        return await client.datasets.create(dataset)
    except Conflict:  # registered meanwhile by another run of the same user
        mine = await client.datasets.list(limit=10_000)
        return next(d.id for d in mine if d.url == dataset.url)


async def register(client: FlameClient, project: Project, design_id: str) -> Registration:
    """The design, its schema, its code and its datasets, each reused when the user already
    registered it with the same content; returns the ids and revisions to run a job on."""
    done = Registration(design_id)
    try:
        await client.designs.create(design_id, description=f"{project.job.name} (flamectl run)")
    except Conflict:
        done.reused.add("design")
    try:
        current: DesignSchema | None = await client.schemas.get(design_id)
    except NotFound:
        current = None
    if current is not None and _same_schema(current, project.schema):
        done.schema_revision = current.revision
        done.reused.add("schema")
    else:
        done.schema_revision = (await client.schemas.create(design_id, project.schema)).revision
    files = role_code(project.folder, project.roles)
    try:
        uploaded = unzip_files(await client.code.download(design_id))
    except NotFound:
        uploaded = None
    if uploaded == files:
        done.code_revision = await client.code.revision(design_id)
        done.reused.add("code")
    else:
        done.code_revision = await client.code.upload(
            design_id, zip_files(files), file_name=f"{design_id}.zip"
        )
    _, datasets = await resolve_datasets(client, project.job, project.folder, register=True)
    done.datasets = datasets.datasets
    done.reused |= datasets.reused
    return done


def _same_schema(a: DesignSchema, b: DesignSchema) -> bool:
    return a.wire(exclude={"revision"}) == b.wire(exclude={"revision"})


def job_spec(
    project: Project, done: Registration, overrides: dict[str, Any] | None = None
) -> JobSpec:
    """The project's job on the registered design and dataset ids, hyperparameters overridden."""
    spec = project.job.model_copy(
        update={
            "design_id": done.design_id,
            "data_spec": [
                RoleDatasetGroups(
                    role=entry.role,
                    dataset_groups={
                        group: [done.datasets.get(n, n) for n in names]
                        for group, names in entry.dataset_groups.items()
                    },
                )
                for entry in project.job.data_spec
            ],
        }
    )
    return with_hyperparameters(spec, overrides or {})
