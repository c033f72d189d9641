"""Computes (where workers run) and the deployment config a compute's deployer fetches."""

from __future__ import annotations

import builtins

from flame_sdk.client.base import Resource
from flame_sdk.client.http import segment
from schemas.compute import DEFAULT_REGION, ComputeSpec, ComputeStatus, DeploymentConfig


class ComputesClient(Resource):
    async def register(
        self,
        compute_id: str,
        *,
        region: str = DEFAULT_REGION,
        api_key: str = "",
        admin_id: str = "",
        managed: bool = True,
    ) -> ComputeStatus:
        """Register a compute; `managed=False` means users start its agents themselves."""
        spec = ComputeSpec(
            compute_id=compute_id,
            region=region,
            api_key=api_key,
            admin_id=admin_id,
            managed=managed,
        )
        body = await self._t.json("POST", "/computes", json=spec.wire())
        return ComputeStatus.model_validate(body)

    async def list(self, *, admin_id: str) -> builtins.list[ComputeSpec]:
        body = await self._t.json("GET", "/computes", params={"adminId": admin_id})
        return [ComputeSpec.model_validate(c) for c in body or []]

    async def deployment_config(
        self, compute_id: str, job_id: str, *, api_key: str
    ) -> DeploymentConfig:
        """Task ids and keys of one job's tasks on this compute (needs the compute's api key)."""
        path = f"/computes/{segment(compute_id)}/deployments/{segment(job_id)}/config"
        body = await self._t.json("GET", path, headers={"X-API-KEY": api_key})
        return DeploymentConfig.model_validate(body)
