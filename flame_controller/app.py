"""The controller's composition root: builds the store adapters, injects them, runs everything.

Nothing else constructs stores: `open_stores(settings)` picks the adapters of
`settings.controller_store` (`mongo` or `memory`), and `running_controller` hands them to the
`Controller`, the outbox relay and the timers (tests may pass their own `Stores`). The jobs it
writes are those of the partitions it owns (`partitions.py`): replayed when gained, ticked by
the timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from pymongo.errors import ConnectionFailure

from flame_common.db import init_db
from flame_common.gc_tuning import tune_gc
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_common.topology import topology
from flame_controller.broker_accounts import BrokerAccountsError, JobAccounts, sweep
from flame_controller.consumer import EventConsumer
from flame_controller.handlers import handle_command
from flame_controller.memory import MemoryCatalog, MemoryJobStore
from flame_controller.mongo import MongoCatalog, MongoJobStore
from flame_controller.mosquitto_accounts import MosquittoAccounts
from flame_controller.outbox import OutboxRelay
from flame_controller.partitions import Partitions
from flame_controller.ports import Catalog, JobStore
from flame_controller.provenance import Provenance
from flame_controller.rabbit_accounts import RabbitAccounts, vhost_of
from flame_controller.service import Controller
from flame_controller.timers import run_timers

log = get_logger(__name__)

STOP_SECONDS = 10.0  # a shutdown step (workers ending, the broker connection closing) at most


@dataclass(frozen=True)
class Stores:
    """The adapters behind the controller's ports."""

    jobs: JobStore
    catalog: Catalog
    # exceptions meaning "the store is unreachable for now" (retried in place, not requeued)
    unavailable: tuple[type[BaseException], ...] = ()


@contextlib.asynccontextmanager
async def open_stores(settings: FlameSettings) -> AsyncIterator[Stores]:
    """The adapters `settings.controller_store` names (MongoDB: connected, closed on exit)."""
    if settings.controller_store == "memory":
        yield Stores(
            MemoryJobStore(settings.stop_grace_seconds, settings.deploy_timeout), MemoryCatalog()
        )
        return
    client = await init_db(settings)
    try:
        yield Stores(
            MongoJobStore(settings.stop_grace_seconds, settings.deploy_timeout),
            MongoCatalog(),
            (ConnectionFailure,),
        )
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def running_controller(
    settings: FlameSettings, stores: Stores | None = None
) -> AsyncIterator[Controller]:
    """Start the controller (consumers, outbox, timers); yields it; shuts down cleanly."""
    tune_gc()
    async with contextlib.AsyncExitStack() as stack:
        if stores is None:
            stores = await stack.enter_async_context(open_stores(settings))
        accounts = await stack.enter_async_context(open_accounts(settings))
        async with _serving(settings, stores, accounts) as controller:
            yield controller


@contextlib.asynccontextmanager
async def open_accounts(settings: FlameSettings) -> AsyncIterator[JobAccounts | None]:
    """Per-job logins on the data-plane brokers whose admin access is on (RabbitMQ's management
    API, Mosquitto's dynamic-security plugin); None (loudly) when none is."""
    async with _rabbit_accounts(settings) as rabbit:
        brokers = [b for b in (rabbit, await _mosquitto_accounts(settings)) if b is not None]
        yield JobAccounts(settings.namespace, brokers) if brokers else None


@contextlib.asynccontextmanager
async def _rabbit_accounts(settings: FlameSettings) -> AsyncIterator[RabbitAccounts | None]:
    """Per-job RabbitMQ users through the management API; None (loudly) when it is off or away."""
    if not settings.rabbit_admin_url:
        log.warning(
            "FLAME_RABBIT_ADMIN_URL is empty: role code of every job gets the shared broker "
            "credentials of FLAME_JOB_BROKERS (it can publish control events and read other jobs)"
        )
        yield None
        return
    async with RabbitAccounts(
        settings.rabbit_admin_url,
        settings.namespace,
        vhost_of(_data_broker_url(settings)),
        ca_file=settings.ca_file,
    ) as accounts:
        try:
            await accounts.check()
        except BrokerAccountsError as exc:
            log.error(
                "per-job broker users are OFF: role code gets the shared broker credentials "
                "(enable the plugin: rabbitmq-plugins enable rabbitmq_management)",
                error=str(exc),
            )
            yield None
            return
        yield accounts


async def _mosquitto_accounts(settings: FlameSettings) -> MosquittoAccounts | None:
    """Per-job MQTT clients through the dynamic-security plugin; None (loudly, when a job broker
    is MQTT) when it is off or away."""
    if not any(b.get("sort") == "mqtt" for b in settings.job_brokers):
        return None
    if not settings.mqtt_admin_url:
        log.warning(
            "FLAME_MQTT_ADMIN_URL is empty: role code of every job gets the MQTT brokers of "
            "FLAME_JOB_BROKERS as configured (it can subscribe to and publish on other jobs' "
            "topics)"
        )
        return None
    accounts = MosquittoAccounts(
        settings.mqtt_admin_url, settings.namespace, ca_file=settings.ca_file
    )
    try:
        await accounts.check()
    except BrokerAccountsError as exc:
        log.error(
            "per-job MQTT clients are OFF: role code gets the MQTT brokers as configured "
            "(load Mosquitto's dynamic-security plugin; FLAME_MQTT_ADMIN_URL names its admin)",
            error=str(exc),
        )
        return None
    return accounts


def _data_broker_url(settings: FlameSettings) -> str:
    hosts = [b.get("host", "") for b in settings.job_brokers if b.get("sort") == "rabbitmq"]
    return hosts[0] if hosts else settings.rabbit_url


@contextlib.asynccontextmanager
async def _serving(
    settings: FlameSettings, stores: Stores, accounts: JobAccounts | None
) -> AsyncIterator[Controller]:
    relay = OutboxRelay(settings, stores.jobs)
    provenance = Provenance(settings, stores.jobs)
    controller = Controller(
        settings, stores.jobs, stores.catalog, relay.enqueue, accounts, provenance.learn
    )

    async def sweep_users() -> None:
        """Delete the broker users of jobs no longer open (e.g. just quarantined)."""
        if accounts is not None and (stale := await sweep(accounts, await stores.jobs.open_jobs())):
            log.info("stale job broker users deleted", jobs=len(stale))

    async def gained(new: frozenset[int]) -> None:
        """Replay the open jobs of partitions we now write (states cached earlier are stale)."""
        controller.forget_jobs(lambda job_id: partitions.of(job_id) in new)
        open_jobs = await stores.jobs.open_jobs()
        await controller.recover([j for j in open_jobs if partitions.of(j) in new])
        await sweep_users()

    partitions = Partitions(topology(settings), on_gain=gained, forget=controller.forget_jobs)
    consumer = EventConsumer(
        settings,
        controller.observe,
        transient=stores.unavailable,
        partitions=partitions,
        run_command=functools.partial(handle_command, controller),
        provenance=provenance,
    )
    workers: list[asyncio.Task[None]] = []
    amqp: AbstractRobustConnection | None = None
    try:
        # events and commands in, the outbox out: aio-pika/aiormq directly
        amqp = await aio_pika.connect_robust(settings.rabbit_url)
        await consumer.start(amqp)  # deliveries wait in its inbox until it runs
        await relay.open(amqp)
        await relay.republish_pending()
        await sweep_users()
        workers = [
            asyncio.create_task(relay.run(), name="outbox"),
            asyncio.create_task(consumer.run(), name="events"),
            asyncio.create_task(consumer.probe(), name="probes"),
            asyncio.create_task(
                run_timers(controller, stores.jobs, settings.tick_seconds, partitions.owns),
                name="timers",
            ),
        ]
        log.info("controller started", namespace=settings.namespace)
        yield controller
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.drained(), timeout=5)
    finally:
        for worker in workers:
            worker.cancel()
        stopping = asyncio.gather(*workers, return_exceptions=True)
        try:
            await asyncio.wait_for(stopping, STOP_SECONDS)
        except TimeoutError:
            log.error("controller workers did not stop", seconds=STOP_SECONDS)
        if amqp is not None:  # unacked deliveries go back to the queue
            try:
                await asyncio.wait_for(amqp.close(), STOP_SECONDS)
            except TimeoutError:
                log.error("broker connection did not close", seconds=STOP_SECONDS)
        log.info("controller stopped")
