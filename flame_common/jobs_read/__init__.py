"""Read-only view of the controller's jobs, tasks and event log for the other services."""

from flame_common.jobs_read.port import JobReads, JobRecord, TaskRecord

__all__ = ["JobReads", "JobRecord", "TaskRecord"]
