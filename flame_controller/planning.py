"""Gather what expansion needs from the catalog (design, pinned code, datasets); plan the tasks."""

from __future__ import annotations

import secrets
from collections.abc import Collection

from flame_common.datanames import without_credentials
from flame_common.settings import FlameSettings
from flame_controller.expansion import PlannedTask, code_roles, expand
from flame_controller.ports import Catalog
from schemas.design import DesignSchema
from schemas.errors import Invalid, NotFound
from schemas.job import JobSpec
from schemas.plugins import model_spec_errors
from schemas.task_config import BROKER_BACKENDS, Broker, Registry


class Planner:
    """Turns a job spec into planned tasks, reading designs, code and datasets."""

    def __init__(
        self, settings: FlameSettings, catalog: Catalog, *, login_sorts: Collection[str] = ()
    ) -> None:
        """`login_sorts`: the broker sorts on which jobs get their own login, so configs keep no
        credentials for them (the apiserver adds the job's login when it serves a config to an
        agent)."""
        self.catalog = catalog
        self.brokers = [Broker.model_validate(b) for b in settings.job_brokers]
        for i, broker in enumerate(self.brokers):
            if broker.sort in login_sorts:
                self.brokers[i] = broker.model_copy(
                    update={"host": without_credentials(broker.host)}
                )
        self.registry = Registry.model_validate(settings.job_registry)
        self.max_tasks = settings.max_tasks_per_job

    async def plan(
        self, job_id: str, user_id: str, spec: JobSpec
    ) -> tuple[JobSpec, list[PlannedTask]]:
        """The spec as stored (id, user, pinned revisions) and its tasks; raises FlameError."""
        if errors := model_spec_errors(spec.model_spec):
            raise Invalid("modelSpec: " + "; ".join(errors))
        design = await self.catalog.design(user_id, spec.design_id)
        if design is None:
            raise NotFound(f"design {spec.design_id} not found")
        if not design.schema or not design.schema_revision:
            raise Invalid(f"design {spec.design_id} has no schema")
        if not design.code_revision:
            raise Invalid(f"design {spec.design_id} has no code")
        code = await self.catalog.code(user_id, spec.design_id, design.code_revision)
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
        schema = DesignSchema.model_validate(design.schema)
        self._check_backends(pinned, schema)
        if len(dataset_ids := _dataset_ids(pinned)) > self.max_tasks:
            raise Invalid(
                f"the dataSpec names {len(dataset_ids)} datasets, more than the limit "
                f"of {self.max_tasks} tasks per job"
            )
        datasets = await self.catalog.datasets(dataset_ids)
        tasks = expand(
            pinned,
            schema,
            code_roles(code),
            datasets,
            brokers=self.brokers,
            registry=self._registry(pinned),
            max_tasks=self.max_tasks,
        )
        return pinned, tasks

    def _check_backends(self, spec: JobSpec, schema: DesignSchema) -> None:
        """Refuse at creation a job whose backend (or a channel's) no job broker serves: it
        would be accepted and every task would fail at start."""
        served = sorted({b.sort for b in self.brokers})
        wanted = {spec.backend} | {c.backend for c in schema.channels if c.backend}
        for backend in sorted(wanted):
            where = "backend" if backend == spec.backend else "a channel's backend"
            if backend not in BROKER_BACKENDS:
                raise Invalid(
                    f"{where} '{backend}' is not supported by this platform "
                    f"(supported: {', '.join(BROKER_BACKENDS)})"
                )
            if backend not in served:
                raise Invalid(
                    f"{where} '{backend}' has no job broker here: FLAME_JOB_BROKERS lists "
                    f"{', '.join(served) or 'none'}"
                )

    def _registry(self, spec: JobSpec) -> Registry:
        """The job's own registry when its modelSpec names one, else the platform's."""
        own = spec.model_spec.registry
        return Registry(sort=own.sort, uri=own.uri) if own.sort else self.registry


def new_keys(tasks: list[PlannedTask]) -> dict[str, str]:
    """A fresh secret key per task (agents present it to fetch their task)."""
    return {t.task_id: secrets.token_hex(16) for t in tasks}


def _dataset_ids(spec: JobSpec) -> list[str]:
    return sorted(
        {ds for entry in spec.data_spec for g in entry.dataset_groups.values() for ds in g}
    )
