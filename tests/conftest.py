"""Shared fixtures: a real nx-27017 per session, the real RabbitMQ/Mosquitto, unique namespaces."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
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


def pytest_configure(config: pytest.Config) -> None:
    """Cache bytecode even where the environment turned it off (PYTHONDONTWRITEBYTECODE): the
    suite imports its modules in two workers and starts hundreds of Python processes (CLIs,
    agents, role code), each of which would otherwise compile every module again. Log lines of
    code that never configured logging are rendered plainly."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    # structlog's default console output renders a logged exception with rich: its source
    # highlighted and every frame's locals, ~30 ms each in tests that log expected failures
    plain = structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )
    processors = structlog.get_config()["processors"]
    structlog.configure(
        processors=[
            plain if isinstance(p, structlog.dev.ConsoleRenderer) else p for p in processors
        ]
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test that uses a real service through a fixture (even indirectly),
    so `-m "not integration and not e2e"` selects only service-free tests."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_NAMESPACES: list[str] = []


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
def namespace() -> Iterator[str]:
    """A unique bus namespace / database name so tests never see each other's traffic; its queues,
    exchanges and broker users are deleted when the test ends (durable queues left by hundreds of
    tests would pile up on the broker: each holds file handles)."""
    ns = track_namespace(f"t{uuid.uuid4().hex[:10]}")
    yield ns
    if port_open("127.0.0.1", 15672):
        _NAMESPACES.remove(ns)
        delete_namespaces([ns])


@pytest.fixture(scope="session", autouse=True)
def _delete_test_queues() -> Iterator[None]:
    """At the end of the session, remove what the tests declared in namespaces not yet cleaned."""
    yield
    if _NAMESPACES and port_open("127.0.0.1", 15672):
        delete_namespaces(list(_NAMESPACES))


def delete_namespaces(namespaces: list[str]) -> None:
    """Delete, through the management API, every queue and exchange named `<namespace>.…` and the
    per-job broker users of these namespaces. Cleanup only: bounded, and a failure is a warning."""
    admin = httpx.URL(FlameSettings().rabbit_admin_url)
    prefixes = tuple(f"{ns}." for ns in namespaces)
    try:
        with httpx.Client(
            base_url=admin.copy_with(username=None, password=None),
            auth=(admin.username, admin.password),
            timeout=10,
        ) as http:
            for kind in ("queues", "exchanges"):
                listing = http.get(f"/api/{kind}/%2F", params={"columns": "name"})
                listing.raise_for_status()
                for name in (item["name"] for item in listing.json()):
                    if name.startswith(prefixes):
                        http.delete(f"/api/{kind}/%2F/{quote(name, safe='')}")
        asyncio.run(asyncio.wait_for(delete_job_users(namespaces), 30))
    except Exception as exc:  # the tests have already reported; a leftover is not a failure
        print(f"warning: broker objects of {namespaces[:3]}… not deleted: {exc!r}")


async def delete_job_users(namespaces: list[str]) -> None:
    """Delete the per-job broker users of jobs the tests started and never ended."""
    from flame_controller.rabbit_accounts import RabbitAccounts

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
