"""Shared fixtures: a real nx-27017 per session, the real RabbitMQ/Mosquitto, unique namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from flame_common.embedded import EmbeddedMongo, port_open, start_embedded_mongo
from flame_common.settings import FlameSettings

RABBIT_URL = os.environ.get("FLAME_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMongo]:
    """One nx-27017 for the whole session; each test gets its own database name."""
    server = start_embedded_mongo(tmp_path_factory.mktemp("mongo"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    if not port_open("127.0.0.1", 5672):
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672 (run `rabbitmq-server -detached`)")
    return RABBIT_URL


@pytest.fixture(scope="session")
def mqtt_broker() -> tuple[str, int]:
    if not port_open(MQTT_HOST, MQTT_PORT):
        pytest.fail("Mosquitto is not listening on 127.0.0.1:1883")
    return MQTT_HOST, MQTT_PORT


SERVICE_FIXTURES = frozenset({"mongo_server", "rabbit_url", "mqtt_broker"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test that uses a real service through a fixture (even indirectly),
    so `-m "not integration and not e2e"` selects only service-free tests."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_NAMESPACES: list[str] = []
# Durable queues and exchanges the services declare per namespace (agent inboxes expire).
_QUEUES = (
    "controller.events",
    "controller.commands",
    "notifier",
    "notifier.agents",
    "deployer.default",
    "dead-letters",
    "controller.members",
    # the controller's partition queues (FLAME_CONTROLLER_PARTITIONS: the default in tests)
    *(f"controller.partition.{i}" for i in range(FlameSettings().controller_partitions)),
)
_EXCHANGES = ("events", "agents", "dead-letters")


def track_namespace(ns: str) -> str:
    """Have the session's end delete the durable queues/exchanges of namespace `ns`."""
    _NAMESPACES.append(ns)
    return ns


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what an entry point run by a test configures: its loggers write to that test's
    captured stderr, closed once the test ends (later writes would raise in other tests)."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def namespace() -> str:
    """A unique bus namespace / database name so tests never see each other's traffic."""
    return track_namespace(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session", autouse=True)
def _delete_test_queues() -> Iterator[None]:
    """At the end of the session, remove the durable queues/exchanges the tests declared."""
    yield
    if not _NAMESPACES or not port_open("127.0.0.1", 5672):
        return
    try:  # bounded: a broker that stopped answering must not hang the end of the session
        asyncio.run(asyncio.wait_for(delete_namespaces(list(_NAMESPACES)), 120))
    except Exception as exc:  # cleanup only: the tests have already reported
        print(f"warning: test queues not deleted: {exc!r}")


async def delete_namespaces(namespaces: list[str]) -> None:
    """Delete the durable queues and exchanges the services declare in these namespaces."""
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL, timeout=10)
    async with connection:
        for ns in namespaces:
            for queue in _QUEUES:
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(f"{ns}.{queue}")
                with contextlib.suppress(Exception):
                    await channel.close()
            for exchange in _EXCHANGES:
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(f"{ns}.{exchange}")
                with contextlib.suppress(Exception):
                    await channel.close()
    await delete_job_users(namespaces)


async def delete_job_users(namespaces: list[str]) -> None:
    """Delete the per-job broker users of jobs the tests started and never ended."""
    from flame_controller.rabbit_accounts import RabbitAccounts

    with contextlib.suppress(Exception):  # no management API: no users were made
        for ns in namespaces:
            async with RabbitAccounts(FlameSettings().rabbit_admin_url, ns) as accounts:
                for job_id in await accounts.jobs():
                    await accounts.close(job_id)


@pytest.fixture
def settings(
    mongo_server: EmbeddedMongo, rabbit_url: str, namespace: str, tmp_path: Path
) -> FlameSettings:
    """Settings of an isolated stack: own database, own namespace, own home directory."""
    return FlameSettings(
        home=tmp_path / "flame-home",
        mongo_url=mongo_server.url,
        mongo_db=namespace,
        rabbit_url=rabbit_url,
        namespace=namespace,
        service_secret=f"service-secret-of-{namespace}",  # what the test plays a service with
        log_json=False,
        heartbeat_interval=0.5,
        heartbeat_timeout=3.0,
        stop_grace_seconds=2.0,
    )
