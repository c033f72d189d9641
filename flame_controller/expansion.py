"""TAG expansion: a job spec and its design become planned tasks (pure; reference §4)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from schemas.compute import DEFAULT_COMPUTE
from schemas.design import Channel, DesignSchema, GroupBy, Role
from schemas.errors import Forbidden, Invalid
from schemas.job import JobSpec
from schemas.task_config import Broker, JobRef, Registry, TaskConfig

DEFAULT_GROUP = "default"
DEFAULT_MAX_TASKS = 1000  # FLAME_MAX_TASKS_PER_JOB


@dataclass(frozen=True)
class DatasetRef:
    """What expansion needs to know of a dataset named in a dataSpec."""

    dataset_id: str
    user_id: str
    url: str
    compute_id: str = DEFAULT_COMPUTE
    is_public: bool = False


@dataclass(frozen=True)
class PlannedTask:
    """One worker instance of a job: role, grouping, placement and its config."""

    task_id: str
    role: str
    group_association: dict[str, str] | None
    compute_id: str
    dataset: str
    config: TaskConfig


def code_roles(zip_bytes: bytes) -> frozenset[str]:
    """Top-level directory names of a code zip; rejects root-level files and unsafe paths."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile as exc:
        raise Invalid(f"the design code is not a valid zip archive: {exc}") from exc
    roles: set[str] = set()
    with archive:
        for info in archive.infolist():
            path = PurePosixPath(info.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts:
                raise Invalid(f"the code zip contains an unsafe path: {info.filename!r}")
            if len(path.parts) == 1 and not info.is_dir():
                raise Invalid(
                    f"the code zip has a file outside any role directory: {info.filename!r} "
                    "(every file must live under a top-level directory named after its role)"
                )
            if path.parts:
                roles.add(path.parts[0])
    if not roles:
        raise Invalid("the code zip is empty")
    return frozenset(roles)


def task_id_for(job_id: str, idx: int, config: TaskConfig) -> str:
    """Deterministic task id: SHA-1 hex of `jobId-idx-<canonical JSON of the config>`."""
    canonical = json.dumps(config.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(f"{job_id}-{idx}-{canonical}".encode()).hexdigest()


def expand(
    spec: JobSpec,
    schema: DesignSchema,
    roles_with_code: frozenset[str],
    datasets: Mapping[str, DatasetRef],
    *,
    brokers: Sequence[Broker] = (),
    registry: Registry | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
) -> list[PlannedTask]:
    """Expand a job (with `id` and `userId` set) into its tasks; raises Invalid/Forbidden.

    A job of more than `max_tasks` tasks is refused before any task is built."""
    problems = schema.semantic_errors()
    if problems:
        raise Invalid("invalid design schema: " + "; ".join(problems))
    data_roles = [r for r in schema.roles if r.is_data_consumer]
    if not data_roles:
        raise Invalid("no data consumer role found in the design schema")
    for name in sorted(schema.role_names()):
        if name not in roles_with_code:
            raise Invalid(f"no code found for role {name}")
    groups_by_role = _resolve_data_spec(spec, schema, datasets)
    count = task_count(schema, groups_by_role)
    if count > max_tasks:
        raise Invalid(f"the job would have {count} tasks, more than the limit of {max_tasks}")

    tasks: list[PlannedTask] = []
    for role in sorted(schema.roles, key=lambda r: r.name):
        template = _template(spec, schema, role, brokers, registry or Registry())
        if role.is_data_consumer:
            tasks.extend(_data_tasks(spec.id, role, template, groups_by_role.get(role.name, {})))
        else:
            tasks.extend(_role_tasks(spec.id, role, template))
    if not any(t.dataset for t in tasks):
        raise Invalid("the dataSpec gives no dataset to any data-consumer role")
    return tasks


def task_count(
    schema: DesignSchema, groups_by_role: Mapping[str, Mapping[str, list[DatasetRef]]]
) -> int:
    """How many tasks `expand` makes: replicas x group associations, one per dataset."""
    count = 0
    for role in schema.roles:
        if role.is_data_consumer:
            count += sum(len(refs) for refs in groups_by_role.get(role.name, {}).values())
        else:
            count += max(role.replica, 1) * len(role.group_association)
    return count


def _resolve_data_spec(
    spec: JobSpec, schema: DesignSchema, datasets: Mapping[str, DatasetRef]
) -> dict[str, dict[str, list[DatasetRef]]]:
    data_role_names = {r.name for r in schema.roles if r.is_data_consumer}
    resolved: dict[str, dict[str, list[DatasetRef]]] = {}
    for entry in spec.data_spec:
        if entry.role not in data_role_names:
            raise Invalid(f"dataSpec names role {entry.role}, which is not a data-consumer role")
        if entry.role in resolved:
            raise Invalid(f"dataSpec names role {entry.role} more than once")
        if not entry.dataset_groups:
            raise Invalid(f"no dataset group specified for data-consumer role {entry.role}")
        groups: dict[str, list[DatasetRef]] = {}
        for group, ids in entry.dataset_groups.items():
            if not ids:
                raise Invalid(f"no dataset specified for role {entry.role}, group {group}")
            groups[group] = [_dataset(spec.user_id, ds_id, datasets) for ds_id in ids]
        resolved[entry.role] = groups
    return resolved


def _dataset(user_id: str, dataset_id: str, datasets: Mapping[str, DatasetRef]) -> DatasetRef:
    ref = datasets.get(dataset_id)
    if ref is None:
        raise Invalid(f"dataset {dataset_id} not found")
    if not ref.is_public and ref.user_id != user_id:
        raise Forbidden(f"dataset {dataset_id} is private to another user")
    return ref


def _template(
    spec: JobSpec,
    schema: DesignSchema,
    role: Role,
    brokers: Sequence[Broker],
    registry: Registry,
) -> TaskConfig:
    channels = sorted((c for c in schema.channels if role.name in c.pair), key=lambda c: c.name)
    model = spec.model_spec
    return TaskConfig(
        backend=spec.backend,
        brokers=list(brokers),
        registry=registry,
        job=JobRef(id=spec.id, name=spec.design_id),
        role=role.name,
        channels=[_with_default_group(c) for c in channels],
        max_run_time=spec.max_run_time,
        base_model=model.base_model,
        optimizer=model.optimizer,
        selector=model.selector,
        privacy=model.privacy,
        datasampler=model.datasampler,
        hyperparameters=model.hyperparameters,
        dependencies=model.dependencies,
    )


def _with_default_group(channel: Channel) -> Channel:
    if channel.group_by.value:
        return channel
    return channel.model_copy(update={"group_by": GroupBy(type="tag", value=[DEFAULT_GROUP])})


def _role_tasks(job_id: str, role: Role, template: TaskConfig) -> list[PlannedTask]:
    tasks: list[PlannedTask] = []
    for _ in range(max(role.replica, 1)):
        for assoc in role.group_association:
            config = template.model_copy(update={"group_association": dict(assoc)})
            tasks.append(_planned(job_id, len(tasks), role, config, DEFAULT_COMPUTE))
    return tasks


def _data_tasks(
    job_id: str, role: Role, template: TaskConfig, groups: Mapping[str, list[DatasetRef]]
) -> list[PlannedTask]:
    tasks: list[PlannedTask] = []
    for group in sorted(groups):
        assoc = next((a for a in role.group_association if group in a.values()), None)
        for ref in groups[group]:
            config = template.model_copy(
                update={"group_association": dict(assoc) if assoc else None, "dataset": ref.url}
            )
            tasks.append(_planned(job_id, len(tasks), role, config, ref.compute_id))
    return tasks


def _planned(job_id: str, idx: int, role: Role, config: TaskConfig, compute: str) -> PlannedTask:
    return PlannedTask(
        task_id=task_id_for(job_id, idx, config),
        role=role.name,
        group_association=config.group_association,
        compute_id=compute or DEFAULT_COMPUTE,
        dataset=config.dataset,
        config=config,
    )
