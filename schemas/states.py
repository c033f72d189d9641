"""Enumerations shared by jobs, tasks, computes and agents."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """State of a job; tasks reuse the same names (Flame's `JobState`)."""

    READY = "ready"
    STARTING = "starting"
    APPLYING = "applying"
    DEPLOYING = "deploying"
    STOPPING = "stopping"
    RUNNING = "running"
    FAILED = "failed"
    TERMINATED = "terminated"
    COMPLETED = "completed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.FAILED, JobState.TERMINATED, JobState.COMPLETED})

# States a user may request through PUT .../status.
USER_REQUESTABLE_STATES = frozenset({JobState.STARTING, JobState.STOPPING, JobState.APPLYING})

# States an agent may report for its task through PUT .../task/status.
AGENT_REPORTABLE_STATES = frozenset(
    {JobState.RUNNING, JobState.FAILED, JobState.TERMINATED, JobState.COMPLETED}
)


class ComputeState(StrEnum):
    UP = "up"
    DOWN = "down"
    MAINTENANCE = "maintenance"


class AgentState(StrEnum):
    DEPLOY_SUCCESS = "agentDeploySuccess"
    DEPLOY_FAILED = "agentDeployFailed"
    REVOKE_SUCCESS = "agentRevokeSuccess"
    REVOKE_FAILED = "agentRevokeFailed"
