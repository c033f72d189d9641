"""Load the Flame example designs of tests/data/flame_examples as controller inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flame_controller.expansion import DatasetRef
from schemas.design import DesignSchema
from schemas.job import JobSpec
from tests.support.zips import code_zip

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "flame_examples"

# Computes registered like fiab: `default` in region default/us, plus the extra deployer chart's
# `compute-1` in default/us/west, plus `eu1` (the hybrid example names it as a realm).
COMPUTES = {"default": "default/us", "compute-1": "default/us/west", "eu1": "default/eu"}


def place(realm: str, is_public: bool) -> str:
    """Dataset placement of control-plane reference §1.5 (the apiserver's job; test-side copy)."""
    if realm.startswith("default/"):
        matches = sorted(c for c, region in COMPUTES.items() if region == realm)
        if matches:
            return matches[0]
        if not is_public:
            raise ValueError(f"no compute for private dataset in region {realm}")
        return "default"
    if realm not in COMPUTES:
        raise ValueError(f"computeId {realm} not found")
    return realm


@dataclass
class Example:
    name: str
    schema: DesignSchema
    spec: dict[str, Any]
    datasets: dict[str, DatasetRef]  # dataset id -> dataset
    roles: frozenset[str]

    def job_spec(self, job_id: str, user_id: str = "alice") -> JobSpec:
        return JobSpec.model_validate({**self.spec, "id": job_id, "userId": user_id})

    def code_zip(self) -> bytes:
        return code_zip({role: f"print('{role}')\n" for role in sorted(self.roles)})


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_example(name: str, dataset_files: dict[str, str], data_spec: Any = None) -> Example:
    """`dataset_files` maps the dataSpec's dataset ids to the example's dataset*.json files."""
    root = EXAMPLES / name
    schema = DesignSchema.model_validate(_json(root / "schema.json"))
    job = _json(root / "job.json")
    model = _json(root / "modelSpec.json")
    spec = {k: v for k, v in job.items() if not k.endswith("Path")}
    spec["dataSpec"] = data_spec if data_spec is not None else _json(root / "dataSpec.json")
    spec["modelSpec"] = model
    datasets: dict[str, DatasetRef] = {}
    for ds_id, file in dataset_files.items():
        raw = _json(root / file)
        datasets[ds_id] = DatasetRef(
            dataset_id=ds_id,
            user_id="publisher",
            url=raw["url"],
            compute_id=place(raw["realm"], raw.get("isPublic", False)),
            is_public=raw.get("isPublic", False),
        )
    return Example(name, schema, spec, datasets, frozenset(r.name for r in schema.roles))
