"""Beanie documents: Flame's MongoDB collections (designs, code, datasets, jobs, tasks, events).

Writers: the apiserver writes designs, code, datasets, computes and API tokens; the controller is
the single writer of jobs, tasks and the event log. Query with ONE merged filter dict (nx-27017:
no `$and`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (nx-27017 may answer one without a zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class DesignDoc(Document):
    user_id: str
    design_id: str
    name: str = ""
    description: str = ""
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_revision: int = 0
    code_revision: int = 0
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "designs"
        indexes = [IndexModel([("user_id", ASCENDING), ("design_id", ASCENDING)], unique=True)]


class CodeDoc(Document):
    """One revision of a design's code zip (history is kept; jobs pin a revision)."""

    user_id: str
    design_id: str
    revision: int
    file_name: str
    data: bytes
    size: int
    sha256: str
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "code"
        indexes = [
            IndexModel(
                [("user_id", ASCENDING), ("design_id", ASCENDING), ("revision", ASCENDING)],
                unique=True,
            )
        ]


class DatasetDoc(Document):
    dataset_id: str
    user_id: str
    name: str = ""
    description: str = ""
    url: str
    data_format: str
    realm: str
    compute_id: str = "default"
    is_public: bool = False

    class Settings:
        name = "datasets"
        indexes = [
            IndexModel([("dataset_id", ASCENDING)], unique=True),
            IndexModel([("user_id", ASCENDING), ("url", ASCENDING)], unique=True),
        ]


class ComputeDoc(Document):
    compute_id: str
    region: str = "default"
    admin_id: str = ""
    api_key: str = ""
    managed: bool = True
    state: str = "up"
    registered_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "computes"
        indexes = [IndexModel([("compute_id", ASCENDING)], unique=True)]


class JobDoc(Document):
    """Projection of a job's event stream (written only by the controller)."""

    job_id: str
    user_id: str
    name: str
    design_id: str
    spec: dict[str, Any]
    state: str = "ready"
    reason: str = ""
    task_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    deadline_at: datetime | None = None  # maxRunTime deadline while the job is active
    last_seq: int = 0

    class Settings:
        name = "jobs"
        indexes = [
            IndexModel([("job_id", ASCENDING)], unique=True),
            IndexModel([("user_id", ASCENDING)]),
            IndexModel([("state", ASCENDING)]),
        ]


class TaskDoc(Document):
    """Projection of one task (written only by the controller)."""

    job_id: str
    task_id: str
    role: str
    group_association: dict[str, str] | None = None
    compute_id: str = "default"
    key: str
    state: str = "ready"
    log: str = ""
    exit_code: int | None = None
    log_size: int | None = None  # bytes of output the final status announced
    log_tail_at: int | None = None  # where `log` starts in that output, when it is its end
    agent_id: str = ""
    dataset: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=utcnow)
    # the job's data-plane broker login while it runs (set by the controller; agents only)
    broker_user: str = ""
    broker_password: str = ""
    # the job_brokers sorts the login is valid on (logins stored without it were RabbitMQ's)
    broker_sorts: list[str] = Field(default_factory=lambda: ["rabbitmq"])

    class Settings:
        name = "tasks"
        indexes = [IndexModel([("job_id", ASCENDING), ("task_id", ASCENDING)], unique=True)]


class EventDoc(Document):
    """The event log: one document per event, ordered per job by `seq`; outbox via `published`."""

    event_id: str
    type: str
    job_id: str = ""
    seq: int = 0
    occurred_at: datetime = Field(default_factory=utcnow)
    published: bool = False
    body: dict[str, Any]

    class Settings:
        name = "events"
        indexes = [
            IndexModel([("event_id", ASCENDING)], unique=True),
            # one event per (job, seq): a second writer's append is refused. Descending seq: a
            # key other than the former non-unique (job_id, seq) index's, so older databases
            # get it too
            IndexModel([("job_id", ASCENDING), ("seq", DESCENDING)], unique=True),
            IndexModel([("published", ASCENDING)]),
        ]


class DeploymentDoc(Document):
    job_id: str
    compute_id: str
    agent_statuses: dict[str, str] = Field(default_factory=dict)

    class Settings:
        name = "deployments"
        indexes = [IndexModel([("job_id", ASCENDING), ("compute_id", ASCENDING)], unique=True)]


class TokenDoc(Document):
    """An API token of the apiserver: only its sha256 is stored."""

    token_id: str
    sha256: str
    user_id: str
    scope: str = "user"
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "tokens"
        indexes = [
            IndexModel([("token_id", ASCENDING)], unique=True),
            IndexModel([("sha256", ASCENDING)], unique=True),
        ]


class TaskLogChunkDoc(Document):
    """Bytes `[offset, end)` of a task's output as its agent shipped them (the apiserver keeps
    the last `FLAME_MAX_TASK_LOG_BYTES` of each task; older chunks are deleted)."""

    job_id: str
    task_id: str
    offset: int
    end: int
    data: bytes

    class Settings:
        name = "task_logs"
        indexes = [
            IndexModel(
                [("job_id", ASCENDING), ("task_id", ASCENDING), ("offset", ASCENDING)],
                unique=True,
            ),
        ]


ALL_DOCUMENTS: list[type[Document]] = [
    DesignDoc,
    CodeDoc,
    DatasetDoc,
    ComputeDoc,
    JobDoc,
    TaskDoc,
    EventDoc,
    DeploymentDoc,
    TokenDoc,
    TaskLogChunkDoc,
]
