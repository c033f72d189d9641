"""The data plane over TLS: MQTT backends on a Mosquitto TLS listener (mqtts://) and RabbitMQ
backends on a RabbitMQ node of their own (amqps://), verifying the broker against `cafile`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flame_common.certs import LocalCerts, ensure_local_certs
from tests.sdk.backends.conftest import Cluster
from tests.support.tls import tls_mosquitto, tls_rabbitmq

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LocalCerts:
    return ensure_local_certs(tmp_path_factory.mktemp("tls") / "certs")


@pytest.fixture(scope="module", params=["mqtt", "rabbitmq"])
def tls_broker(
    request: pytest.FixtureRequest, certs: LocalCerts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(sort, broker URL without its CA file)."""
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "mqtt":
        with tls_mosquitto(certs, directory) as port:
            yield "mqtt", f"mqtts://127.0.0.1:{port}"
    else:
        with tls_rabbitmq(certs, directory) as rabbit:
            yield "rabbitmq", f"amqps://guest:guest@127.0.0.1:{rabbit.port}/"


@pytest.fixture
async def clusters() -> AsyncIterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for cluster in made:
        await cluster.close()


def ca_query(url: str, ca: Path) -> str:
    return f"{url}{'&' if '?' in url else '?'}cafile={ca}"


async def test_ends_talk_over_tls_with_the_brokers_ca(
    tls_broker: tuple[str, str], certs: LocalCerts, clusters: list[Cluster]
) -> None:
    sort, url = tls_broker
    cluster = Cluster(sort, ca_query(url, certs.ca_file))
    clusters.append(cluster)
    await cluster.unicast_once(b"weights over TLS")


async def test_a_broker_signed_by_another_ca_is_refused(
    tls_broker: tuple[str, str], tmp_path: Path, clusters: list[Cluster]
) -> None:
    sort, url = tls_broker
    other = ensure_local_certs(tmp_path / "other")
    cluster = Cluster(sort, ca_query(url, other.ca_file))
    clusters.append(cluster)
    end = cluster.end("t1", outage_timeout=2.0)
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await end.join("trainer", "aggregator")
