"""Computes (deployer clusters) and deployments of workers on them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import WireModel
from schemas.states import AgentState, ComputeState

DEFAULT_COMPUTE = "default"
DEFAULT_REGION = "default"


class ComputeSpec(WireModel):
    admin_id: str = ""
    region: str = DEFAULT_REGION
    api_key: str = ""
    compute_id: str = Field(min_length=1)
    managed: bool = True  # False: nobody deploys workers here; users start flamelets by hand


class ComputeStatus(WireModel):
    compute_id: str
    state: ComputeState = ComputeState.UP
    registered_at: datetime | None = None
    updated_at: datetime | None = None


class DeploymentConfig(WireModel):
    job_id: str
    image_loc: str = ""
    agent_kvs: dict[str, str] = Field(default_factory=dict, alias="agentKVs")


class DeploymentStatus(WireModel):
    job_id: str
    compute_id: str
    agent_statuses: dict[str, AgentState] = Field(default_factory=dict)
