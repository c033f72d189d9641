"""Shared fixtures: a real nx-27017 per session, the real RabbitMQ/Mosquitto, unique namespaces."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def namespace() -> str:
    """A unique bus namespace / database name so tests never see each other's traffic."""
    return f"t{uuid.uuid4().hex[:10]}"


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
        log_json=False,
        heartbeat_interval=0.5,
        heartbeat_timeout=3.0,
        stop_grace_seconds=2.0,
    )
