"""Commands sent to the controller as RabbitMQ RPC, and the typed reply."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.errors import ErrorBody, FlameError
from schemas.job import JobSpec
from schemas.task import TaskStatus

COMMAND_QUEUE = "cmd.job"  # suffixed by the bus namespace, see flame_common.bus


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    correlation_id: str | None = None
    # The caller's key for this command: its retries carry the same one and the controller runs
    # it once (answering a retry with the first result); None: no such promise.
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class CreateJob(Command):
    kind: Literal["job.create"] = "job.create"
    spec: JobSpec


class UpdateJob(Command):
    kind: Literal["job.update"] = "job.update"
    job_id: str
    spec: JobSpec


class DeleteJob(Command):
    kind: Literal["job.delete"] = "job.delete"
    job_id: str


class StartJob(Command):
    kind: Literal["job.start"] = "job.start"
    job_id: str


class StopJob(Command):
    kind: Literal["job.stop"] = "job.stop"
    job_id: str


class ReportTaskStatus(Command):
    """An agent's status report that arrived over REST (key-less, as in Flame)."""

    kind: Literal["task.report"] = "task.report"
    job_id: str
    task_id: str
    status: TaskStatus


AnyCommand = Annotated[
    Union[CreateJob, UpdateJob, DeleteJob, StartJob, StopJob, ReportTaskStatus],  # noqa: UP007
    Field(discriminator="kind"),
]
COMMAND_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyCommand)


class CommandReply(BaseModel):
    """Either `result` (a JSON object) or `error`."""

    ok: bool
    result: dict[str, Any] | list[Any] | None = None
    error: ErrorBody | None = None

    @classmethod
    def success(cls, result: dict[str, Any] | list[Any] | None = None) -> CommandReply:
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, err: FlameError) -> CommandReply:
        return cls(ok=False, error=err.body())

    def unwrap(self) -> dict[str, Any] | list[Any] | None:
        """Return the result or raise the typed FlameError."""
        if not self.ok:
            assert self.error is not None
            raise FlameError.from_body(self.error)
        return self.result
