"""The apiserver's ports: its resources store, the controller's command RPC, event publishing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas.commands import Command
from schemas.design import DesignSchema
from schemas.events import EventBase


class AlreadyExists(Exception):
    """A resource with the same unique key is stored already."""


class Contended(Exception):
    """Concurrent writers kept winning a revision race; the caller may retry."""


@dataclass(frozen=True)
class DesignRecord:
    user_id: str
    design_id: str
    name: str = ""
    description: str = ""
    schema: dict[str, Any] | None = None  # wire (camelCase) form
    schema_revision: int = 0
    code_revision: int = 0


@dataclass(frozen=True)
class CodeRecord:
    """One stored revision of a design's code zip."""

    revision: int
    file_name: str
    data: bytes
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetRecord:
    dataset_id: str
    user_id: str
    url: str
    data_format: str
    realm: str
    name: str = ""
    description: str = ""
    compute_id: str = "default"
    is_public: bool = False


@dataclass(frozen=True)
class ComputeRecord:
    compute_id: str
    registered_at: datetime
    updated_at: datetime
    region: str = "default"
    admin_id: str = ""
    api_key: str = ""
    managed: bool = True
    state: str = "up"


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: its sha256 hex, never the token itself."""

    token_id: str
    sha256: str
    user_id: str
    scope: str = "user"  # schemas.token.TokenScope value
    name: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class TaskLogSlice:
    """Stored bytes of a task's output from `start` on (at most what was asked for); `end` is the
    offset past the last stored byte. `start` is past the offset asked for when the bytes there
    were dropped (older than the bound, or never shipped)."""

    start: int
    data: bytes
    end: int

    @property
    def next(self) -> int:
        return self.start + len(self.data)


class Resources(Protocol):
    """Designs (+ schema), code revisions, datasets, computes, deployments and API tokens the
    apiserver owns.

    Lookups return None when absent; writes raise `AlreadyExists` on a unique-key clash and
    `Contended` when a revision race cannot be won.
    """

    # designs and schema
    async def designs(self, user_id: str, limit: int = 0) -> list[DesignRecord]: ...
    async def design(self, user_id: str, design_id: str) -> DesignRecord | None: ...
    async def add_design(self, design: DesignRecord) -> None: ...
    async def update_design(
        self, user_id: str, design_id: str, changes: dict[str, str]
    ) -> DesignRecord | None: ...
    async def delete_design(self, user_id: str, design_id: str) -> bool:
        """Remove the design with every code revision; False if there was none."""

    async def store_schema(
        self, user_id: str, design_id: str, schema: DesignSchema
    ) -> DesignSchema | None:
        """Store `schema` as the design's next revision; returns it with that revision."""

    async def clear_schema(self, user_id: str, design_id: str) -> None:
        """Remove the schema; the revision counter is kept."""

    # code
    async def add_code(
        self, user_id: str, design_id: str, file_name: str, data: bytes, sha256: str
    ) -> CodeRecord | None:
        """Store the next code revision (never reusing a stored number) and make it current."""

    async def code(self, user_id: str, design_id: str, revision: int) -> CodeRecord | None: ...
    async def delete_code(self, user_id: str, design_id: str) -> None:
        """Remove every revision; the design has no current code afterwards."""

    # datasets
    async def datasets(
        self, *, user_id: str | None = None, public: bool = False, limit: int = 0
    ) -> list[DatasetRecord]:
        """The user's datasets, or (`public`) every public one, by id."""

    async def dataset(self, dataset_id: str) -> DatasetRecord | None: ...
    async def datasets_by_id(self, dataset_ids: list[str]) -> dict[str, DatasetRecord]: ...
    async def add_dataset(self, dataset: DatasetRecord) -> None: ...
    async def update_dataset(
        self, dataset_id: str, changes: dict[str, Any]
    ) -> DatasetRecord | None: ...
    async def delete_dataset(self, dataset_id: str) -> bool: ...

    # computes and deployments
    async def compute(self, compute_id: str) -> ComputeRecord | None: ...
    async def first_compute_in(self, region: str) -> ComputeRecord | None:
        """The earliest registered compute of exactly that region."""

    async def computes_of(self, admin_id: str) -> list[ComputeRecord]: ...
    async def add_compute(self, compute: ComputeRecord) -> None: ...
    async def update_compute(
        self, compute_id: str, changes: dict[str, Any]
    ) -> ComputeRecord | None: ...
    async def put_deployment(self, job_id: str, compute_id: str, statuses: dict[str, str]) -> None:
        """Replace the per-task agent states of a job on a compute."""

    async def deployment(self, job_id: str, compute_id: str) -> dict[str, str] | None: ...

    # API tokens
    async def add_token(self, token: TokenRecord) -> None:
        """Store a token; `AlreadyExists` when its id or hash is taken."""

    async def token_by_hash(self, sha256: str) -> TokenRecord | None: ...
    async def tokens(self, user_id: str | None = None) -> list[TokenRecord]:
        """Tokens of `user_id` (every token when None), by id."""

    async def delete_token(self, token_id: str) -> TokenRecord | None:
        """Remove a token; the removed one, or None when there was none."""

    # task output (what agents ship of their role code's stdout/stderr)
    async def append_task_log(
        self, job_id: str, task_id: str, offset: int, data: bytes, keep: int
    ) -> int:
        """Store `data` as the task's bytes from `offset`; returns the offset past the last
        stored byte. Idempotent: bytes already stored are skipped (a retry never duplicates);
        an offset past the end leaves a gap. Whole chunks ending `keep` bytes or more before the
        end are dropped."""

    async def task_log(self, job_id: str, task_id: str, offset: int, limit: int) -> TaskLogSlice:
        """At most `limit` contiguous stored bytes from `offset` (or from the first stored byte
        past it)."""

    async def delete_task_logs(self, job_id: str) -> None:
        """Forget the output of every task of the job."""


class Controller(Protocol):
    """Job commands to the controller (the only writer of jobs and tasks)."""

    async def call(self, command: Command) -> dict[str, Any] | list[Any] | None:
        """The reply's result; the controller's `FlameError` is raised as is."""


class Publisher(Protocol):
    """Where the apiserver's resource events go."""

    async def publish(self, event: EventBase) -> None: ...
