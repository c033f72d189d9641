"""Run a deployer for one compute: register it, consume its worker events, stop workers on exit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flame_common import amqp
from flame_common.db import init_db
from flame_common.jobs_read.mongo import MongoJobReads
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import Deployer
from flame_controller.deployers.local import LocalDeployer
from flame_controller.deployers.registration import api_key, register_compute
from flame_controller.deployers.service import WATCHED, DeployerService
from schemas.compute import DEFAULT_COMPUTE, ComputeSpec


@asynccontextmanager
async def running_deployer(
    settings: FlameSettings,
    compute_id: str = DEFAULT_COMPUTE,
    *,
    register: bool = True,
    deployer: Deployer | None = None,
) -> AsyncIterator[Deployer]:
    """A deployer (default: local) serving `compute_id` until the context exits.

    On exit the deployer is closed: local workers are stopped, cluster workers go on.
    """
    client = await init_db(settings, MongoJobReads.documents)
    connection = await amqp.connect(settings, name=f"flame-deployer-{compute_id}")
    opened: Deployer | None = None
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=32)
        events = await amqp.events_exchange(channel, settings)
        deployer = opened = deployer or LocalDeployer(settings)
        await deployer.open()
        service = DeployerService(settings, compute_id, deployer, events, MongoJobReads())
        deployer.on_failure = service.worker_failed
        queue = await amqp.consumer_queue(channel, settings, f"deployer.{compute_id}", WATCHED)
        if register:  # registered before it consumes: a ready stack has its compute (datasets
            # and jobs name it); worker requests wait in the durable queue meanwhile
            spec = ComputeSpec(compute_id=compute_id, api_key=api_key(settings.home, compute_id))
            await register_compute(
                settings.apiserver_url, spec, settings.registration_token, ca_file=settings.ca_file
            )
        await queue.consume(service.on_message)
        yield deployer
    finally:
        if opened is not None:
            await opened.close()
        await connection.close()
        await client.close()
