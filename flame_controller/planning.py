"""Gather what expansion needs from MongoDB (design, pinned code, datasets); plan the tasks."""

from __future__ import annotations

import secrets

from flame_common.documents import CodeDoc, ComputeDoc, DatasetDoc, DesignDoc
from flame_common.settings import FlameSettings
from flame_controller.expansion import DatasetRef, PlannedTask, code_roles, expand
from schemas.design import DesignSchema
from schemas.errors import Invalid, NotFound
from schemas.job import JobSpec
from schemas.plugins import model_spec_errors
from schemas.task_config import Broker, Registry


class Planner:
    """Turns a job spec into planned tasks, reading designs, code and datasets."""

    def __init__(self, settings: FlameSettings) -> None:
        self.brokers = [Broker.model_validate(b) for b in settings.job_brokers]
        self.registry = Registry.model_validate(settings.job_registry)

    async def plan(
        self, job_id: str, user_id: str, spec: JobSpec
    ) -> tuple[JobSpec, list[PlannedTask]]:
        """The spec as stored (id, user, pinned revisions) and its tasks; raises FlameError."""
        if errors := model_spec_errors(spec.model_spec):
            raise Invalid("modelSpec: " + "; ".join(errors))
        design = await DesignDoc.find_one({"user_id": user_id, "design_id": spec.design_id})
        if design is None:
            raise NotFound(f"design {spec.design_id} not found")
        if not design.schema_ or not design.schema_revision:
            raise Invalid(f"design {spec.design_id} has no schema")
        if not design.code_revision:
            raise Invalid(f"design {spec.design_id} has no code")
        code = await CodeDoc.find_one(
            {"user_id": user_id, "design_id": spec.design_id, "revision": design.code_revision}
        )
        if code is None:
            raise Invalid(f"design {spec.design_id} has no code at revision {design.code_revision}")
        pinned = spec.model_copy(
            update={
                "id": job_id,
                "user_id": user_id,
                "schema_revision": design.schema_revision,
                "code_revision": design.code_revision,
            }
        )
        schema = DesignSchema.model_validate(design.schema_)
        datasets = await _datasets(pinned)
        tasks = expand(
            pinned,
            schema,
            code_roles(code.data),
            datasets,
            brokers=self.brokers,
            registry=self.registry,
        )
        return pinned, tasks


def new_keys(tasks: list[PlannedTask]) -> dict[str, str]:
    """A fresh secret key per task (agents present it to fetch their task)."""
    return {t.task_id: secrets.token_hex(16) for t in tasks}


async def unmanaged_computes() -> frozenset[str]:
    """Computes on which nobody deploys workers (users start flamelets by hand)."""
    docs = await ComputeDoc.find({"managed": False}).to_list()
    return frozenset(d.compute_id for d in docs)


async def _datasets(spec: JobSpec) -> dict[str, DatasetRef]:
    ids = sorted(
        {ds for entry in spec.data_spec for g in entry.dataset_groups.values() for ds in g}
    )
    if not ids:
        return {}
    docs = await DatasetDoc.find({"dataset_id": {"$in": ids}}).to_list()
    return {
        d.dataset_id: DatasetRef(
            d.dataset_id, d.user_id, d.url, d.compute_id or "default", d.is_public
        )
        for d in docs
    }
