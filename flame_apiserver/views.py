"""Read-model views: job and task records rendered as the wire models of the contract."""

from __future__ import annotations

from typing import Any

from flame_common.datanames import with_credentials
from flame_common.jobs_read import JobRecord, TaskRecord
from schemas.job import JobSpec, JobStatus
from schemas.task import TaskInfo
from schemas.task_config import TaskConfig


def job_status(doc: JobRecord) -> JobStatus:
    return JobStatus(
        id=doc.job_id,
        name=doc.name,
        state=doc.state,
        created_at=doc.created_at,
        started_at=doc.started_at,
        updated_at=doc.updated_at,
        ended_at=doc.ended_at,
        reason=doc.reason,
    )


def job_spec(doc: JobRecord) -> JobSpec:
    """The stored spec with the server-owned ids forced."""
    spec = JobSpec.model_validate(doc.spec)
    return spec.model_copy(update={"id": doc.job_id, "user_id": doc.user_id})


def task_info(doc: TaskRecord) -> TaskInfo:
    """A task as users see it: the key is always hidden."""
    return TaskInfo(
        job_id=doc.job_id,
        task_id=doc.task_id,
        role=doc.role,
        group_association=doc.group_association,
        state=doc.state,
        compute_id=doc.compute_id,
        log=doc.log,
        timestamp=doc.timestamp,
    )


def task_config(doc: TaskRecord) -> dict[str, Any]:
    """The worker config of a task in Flame's wire form, with its `taskid`."""
    config = TaskConfig.model_validate(doc.config).model_copy(update={"taskid": doc.task_id})
    return config.to_wire()


# the scheme of a broker host given as a bare `host[:port]`, by broker sort
BARE_HOST_SCHEMES = {"rabbitmq": "amqp", "mqtt": "mqtt"}


def agent_task_config(doc: TaskRecord) -> dict[str, Any]:
    """The config served to the task's agent: its brokers of the sorts the job has a login on
    (RabbitMQ, MQTT) carry that login."""
    config = task_config(doc)
    if doc.broker_user:
        for broker in config.get("brokers", []):
            sort = broker.get("sort", "")
            if sort in doc.broker_sorts:
                broker["host"] = with_credentials(
                    broker["host"],
                    doc.broker_user,
                    doc.broker_password,
                    scheme=BARE_HOST_SCHEMES.get(sort, sort),
                )
    return config
