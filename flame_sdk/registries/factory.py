"""`create_registry(sort, uri, job_id, job_name, task_id, role, job_level=)`: the run's registry."""

from __future__ import annotations

from flame_sdk.registries.base import Registry, RunIdentity
from flame_sdk.registries.dummy import DummyRegistry
from flame_sdk.registries.local import LocalRegistry
from flame_sdk.registries.mlflow_registry import MlflowRegistry

DEFAULT_SORT = "dummy"

_SORTS: dict[str, type[Registry]] = {
    "dummy": DummyRegistry,
    "local": LocalRegistry,
    "mlflow": MlflowRegistry,
}

SORTS = tuple(_SORTS)


def create_registry(
    sort: str,
    uri: str,
    job_id: str,
    job_name: str,
    task_id: str,
    role: str,
    *,
    job_level: bool = False,
) -> Registry:
    """Build registry `sort` ("" means dummy); ValueError for an unknown sort or a bad uri/id.
    `job_level`: this task's metrics are also the job's (registries that keep a job-wide record,
    like mlflow's parent run, log them there too)."""
    sort = sort or DEFAULT_SORT
    if sort not in _SORTS:
        raise ValueError(f"unknown registry sort {sort!r}; known: {', '.join(SORTS)}")
    return _SORTS[sort](RunIdentity(uri, job_id, job_name, task_id, role, job_level))
