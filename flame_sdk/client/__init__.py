"""Management client: async access to the Flame REST API and event streams."""

from flame_sdk.client.client import FlameClient
from flame_sdk.client.files import (
    load_dataset_file,
    load_dataset_update_file,
    load_job_file,
    load_schema_file,
    zip_code,
)
from flame_sdk.client.logs import TaskLog
from flame_sdk.client.progress import JobProgress

__all__ = [
    "FlameClient",
    "JobProgress",
    "TaskLog",
    "load_dataset_file",
    "load_dataset_update_file",
    "load_job_file",
    "load_schema_file",
    "zip_code",
]
