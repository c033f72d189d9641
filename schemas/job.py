"""Job specification (dataSpec, modelSpec) and job status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from schemas.base import WireModel
from schemas.states import JobState

DEFAULT_MAX_RUN_TIME = 600  # seconds; absent or 0 means this default
MAX_RUN_TIME = 7 * 24 * 3600  # a job runs at most a week: the deadline must stay a datetime
MAX_ROUNDS = 100_000  # `rounds` hyperparameter: each round is a loop in every role


class BaseModelRef(WireModel):
    name: str = ""
    version: int = 0


class Plugin(WireModel):
    """A pluggable component chosen by `sort` with free `kwargs` (optimizer, selector, ...)."""

    sort: str = ""
    kwargs: dict[str, Any] = Field(default_factory=dict)


REGISTRY_SORTS = ("dummy", "local", "mlflow")  # = flame_sdk.registries.SORTS (tested)


class ModelRegistry(WireModel):
    """A job's own model registry (Flame's files carry one in the modelSpec); empty `sort` = the
    platform's default registry (`FLAME_JOB_REGISTRY`)."""

    sort: str = Field(default="", json_schema_extra={"enum": ["", *REGISTRY_SORTS]})
    uri: str = ""

    @field_validator("sort")
    @classmethod
    def _known(cls, v: str) -> str:
        if v and v not in REGISTRY_SORTS:
            raise ValueError(f"unknown registry {v!r}; known: {', '.join(REGISTRY_SORTS)}")
        return v


class ModelSpec(WireModel):
    """How the job trains; `privacy` and `datasampler` (Flame extensions of the reference's
    model spec) reach every task config as they are, like `optimizer` and `selector`."""

    base_model: BaseModelRef = Field(default_factory=BaseModelRef)
    optimizer: Plugin = Field(default_factory=Plugin)
    selector: Plugin = Field(default_factory=Plugin)
    privacy: Plugin = Field(default_factory=Plugin)
    datasampler: Plugin = Field(default_factory=Plugin)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)
    registry: ModelRegistry = Field(default_factory=ModelRegistry)

    @field_validator("hyperparameters")
    @classmethod
    def _bounded_rounds(cls, v: dict[str, Any]) -> dict[str, Any]:
        rounds = v.get("rounds")
        if rounds is None:
            return v
        whole = isinstance(rounds, int) or (isinstance(rounds, float) and rounds.is_integer())
        if isinstance(rounds, bool) or not whole:
            raise ValueError(f"hyperparameters.rounds must be a whole number, got {rounds!r}")
        if not 1 <= rounds <= MAX_ROUNDS:
            raise ValueError(
                f"hyperparameters.rounds must be between 1 and {MAX_ROUNDS}, got {rounds}"
            )
        return v


class RoleDatasetGroups(WireModel):
    role: str = Field(min_length=1)
    dataset_groups: dict[str, list[str]] = Field(default_factory=dict)


class JobSpec(WireModel):
    id: str = ""
    name: str = Field(min_length=1)
    user_id: str = ""
    design_id: str = Field(min_length=1)
    schema_revision: int = 0
    code_revision: int = 0
    priority: str = "low"
    backend: str = Field(min_length=1)
    max_run_time: int = Field(
        default=DEFAULT_MAX_RUN_TIME, json_schema_extra={"minimum": 0, "maximum": MAX_RUN_TIME}
    )  # bounds checked by `_positive` (messages naming the field), declared for OpenAPI
    data_spec: list[RoleDatasetGroups] = Field(default_factory=list)
    model_spec: ModelSpec = Field(default_factory=ModelSpec)

    @field_validator("max_run_time", mode="before")
    @classmethod
    def _default_run_time(cls, v: Any) -> Any:
        if v is None or v == 0:
            return DEFAULT_MAX_RUN_TIME
        return v

    @field_validator("max_run_time")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 0:
            raise ValueError("maxRunTime must be a positive number of seconds")
        if v > MAX_RUN_TIME:
            raise ValueError(f"maxRunTime must be at most {MAX_RUN_TIME} s (7 days), got {v}")
        return v

    @field_validator("data_spec", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class JobStatus(WireModel):
    id: str = ""
    name: str = ""
    state: JobState
    created_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""
