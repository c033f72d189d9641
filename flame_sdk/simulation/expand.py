"""Expand an example directory (Flame design JSON files) into one task config per worker.

Directory layout (Flame's): `schema.json` (the TAG), `job.json` (`backend`, `designId`, ...),
`dataSpec.json` (dataset ids per role and group), `modelSpec.json`, and one `<id>.json` per
dataset id named in the dataSpec (its `url` becomes the trainer's `dataset`). Expansion follows
the control plane's rules: roles in alphabetical order; a non-data role yields one task per
group association (x replica); a data role one task per dataset, groups in sorted order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.design import DesignSchema, Role
from schemas.errors import Invalid
from schemas.job import ModelSpec, RoleDatasetGroups
from schemas.plugins import model_spec_errors


@dataclass
class JobOverrides:
    """What a simulation changes in the job: transport, registry, hyperparameters."""

    job_id: str = "sim"
    backend: str = "local"
    brokers: list[dict[str, str]] = field(default_factory=list)
    registry: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Invalid(f"cannot read {path}: {exc}") from exc


def expand(example: Path, overrides: JobOverrides | None = None) -> list[dict[str, Any]]:
    """The task configs (wire dicts, `taskid` included) of the example's job."""
    over = overrides or JobOverrides()
    schema = DesignSchema.model_validate(_read(example / "schema.json"))
    if errors := schema.semantic_errors():
        raise Invalid(f"{example / 'schema.json'}: " + "; ".join(errors))
    job = _read(example / "job.json")
    model_path = example / job.get("modelSpecPath", "modelSpec.json")
    model = ModelSpec.model_validate(_read(model_path))
    if errors := model_spec_errors(model):
        raise Invalid(f"{model_path}: " + "; ".join(errors))
    specs = [
        RoleDatasetGroups.model_validate(item)
        for item in _read(example / job.get("dataSpecPath", "dataSpec.json"))
    ]
    datasets = {s.role: s.dataset_groups for s in specs}
    base: dict[str, Any] = {
        "backend": over.backend,
        "brokers": over.brokers,
        "registry": over.registry or {"sort": "dummy", "uri": ""},
        "job": {"id": over.job_id, "name": job.get("designId") or example.name},
        "realm": "",
        "baseModel": model.base_model.wire(),
        "optimizer": model.optimizer.wire(),
        "selector": model.selector.wire(),
        "privacy": model.privacy.wire(),
        "datasampler": model.datasampler.wire(),
        "hyperparameters": {**model.hyperparameters, **over.hyperparameters},
        "dependencies": model.dependencies,
    }
    tasks: list[dict[str, Any]] = []
    for role in sorted(schema.roles, key=lambda r: r.name):
        channels = [_channel(c.wire()) for c in schema.channels if role.name in c.pair]
        template = {
            **base,
            "role": role.name,
            "channels": sorted(channels, key=lambda c: c["name"]),
        }
        for assoc, dataset in _workers(example, role, datasets):
            task = {**template, "groupAssociation": assoc}
            if dataset:
                task["dataset"] = dataset
            canonical = json.dumps(task, sort_keys=True)
            digest = hashlib.sha1(f"{over.job_id}-{len(tasks)}-{canonical}".encode()).hexdigest()
            tasks.append({**task, "taskid": digest})
    return tasks


def _channel(wire: dict[str, Any]) -> dict[str, Any]:
    wire = {k: v for k, v in wire.items() if k not in ("backend", "brokerHost")}
    if not wire["groupBy"]["value"]:
        wire["groupBy"] = {"type": "tag", "value": ["default"]}
    return wire


def _workers(
    example: Path, role: Role, datasets: dict[str, dict[str, list[str]]]
) -> list[tuple[dict[str, str] | None, str]]:
    if not role.is_data_consumer:
        return [(a, "") for _ in range(max(role.replica, 1)) for a in role.group_association]
    out: list[tuple[dict[str, str] | None, str]] = []
    for group in sorted(datasets.get(role.name, {})):
        assoc = next((a for a in role.group_association if group in a.values()), None)
        for dataset_id in datasets[role.name][group]:
            meta = _read(example / f"{dataset_id}.json")
            if not isinstance(meta, dict) or not meta.get("url"):
                raise Invalid(f"dataset {dataset_id}.json of {example} has no url")
            out.append((assoc, str(meta["url"])))
    return out
