"""TLS plumbing: the local CA and server certificate `flame up --tls` makes, broker URLs given the
CA file, flamectl's CA settings, and MongoDB over TLS (a TLS proxy in front of nx-27017)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pymongo.errors import ServerSelectionTimeoutError

from flame_common.certs import LocalCerts, ensure_local_certs
from flame_common.db import init_db
from flame_common.documents import DesignDoc
from flame_common.embedded import EmbeddedMongo
from flame_common.settings import FlameSettings
from flame_common.tls import client_context, with_ca_file
from flame_sdk.cli.config import resolve_config
from tests.support.tls import tls_proxy


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_local_ca_signs_a_server_certificate_for_localhost(tmp_path: Path) -> None:
    certs = ensure_local_certs(tmp_path / "tls")
    ca, server = load(certs.ca_file), load(certs.cert_file)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)  # raises unless the CA signed it
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    now = datetime.datetime.now(datetime.UTC)
    for cert in (ca, server):
        assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert server.not_valid_after_utc - now <= datetime.timedelta(days=397)
    assert ca.not_valid_after_utc > server.not_valid_after_utc
    for key in (certs.key_file, certs.ca_key):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    # what clients do: a verifying context with the CA accepts the server's chain
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(certs.cert_file, certs.key_file)
    assert client_context(certs.ca_file).verify_mode == ssl.CERT_REQUIRED


def test_certificates_are_kept_and_a_new_host_remakes_only_the_server_one(tmp_path: Path) -> None:
    first = ensure_local_certs(tmp_path / "tls")
    ca, server = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    again = ensure_local_certs(tmp_path / "tls")
    assert (again.ca_file.read_bytes(), again.cert_file.read_bytes()) == (ca, server)
    wider = ensure_local_certs(tmp_path / "tls", ["localhost", "127.0.0.1", "10.1.2.3"])
    assert wider.ca_file.read_bytes() == ca
    assert wider.cert_file.read_bytes() != server
    san = load(wider.cert_file).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ipaddress.ip_address("10.1.2.3") in san.value.get_values_for_type(x509.IPAddress)
    load(wider.cert_file).verify_directly_issued_by(load(wider.ca_file))


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.pem")):
        client_context(tmp_path / "nope.pem")


def test_tls_broker_urls_get_the_ca_file_and_others_stay() -> None:
    ca = "/home/a b/ca.pem"
    assert with_ca_file("amqps://u:p@h:5671/vh?heartbeat=5", ca) == (
        "amqps://u:p@h:5671/vh?heartbeat=5&cafile=/home/a%20b/ca.pem"
    )
    assert with_ca_file("mqtts://h:8883", ca) == "mqtts://h:8883?cafile=/home/a%20b/ca.pem"
    assert with_ca_file("amqps://h/?cafile=/mine.pem", ca) == "amqps://h/?cafile=/mine.pem"
    assert with_ca_file("amqp://h:5672/", ca) == "amqp://h:5672/"


def test_flamectl_ca_file_flag_over_env_over_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("apiserver:\n  endpoint: https://h:1\n  caFile: /from/config.pem\n")

    def ca(env: dict[str, str], flag: str | None = None) -> str:
        env = {"FLAME_CONFIG": str(config), **env}
        return resolve_config(
            config_path=None, endpoint=None, user="u", env=env, home=tmp_path, ca_file=flag
        ).ca_file

    assert ca({}) == "/from/config.pem"
    assert ca({"FLAME_CA_FILE": "/from/env.pem"}) == "/from/env.pem"
    assert ca({"FLAME_CA_FILE": "/from/env.pem"}, "/from/flag.pem") == "/from/flag.pem"


@pytest.fixture
async def tls_mongo(
    mongo_server: EmbeddedMongo, tmp_path: Path
) -> AsyncIterator[tuple[int, LocalCerts]]:
    certs = ensure_local_certs(tmp_path / "tls")
    with tls_proxy(certs, mongo_server.port) as proxy:
        yield proxy.port, certs


async def test_mongodb_over_tls_trusts_the_settings_ca_file(
    tls_mongo: tuple[int, LocalCerts], tmp_path: Path
) -> None:
    """nx-27017 has no TLS of its own: a TLS proxy stands for a MongoDB with TLS on (the ping
    passes only through a verified handshake)."""
    port, certs = tls_mongo
    url = f"mongodb://127.0.0.1:{port}/?tls=true"
    settings = FlameSettings(mongo_url=url, mongo_db="tlscheck", ca_file=str(certs.ca_file))
    client: Any = await init_db(settings, [DesignDoc])
    try:
        assert (await client["tlscheck"].command("ping"))["ok"] == 1
    finally:
        await client.close()
    other = ensure_local_certs(tmp_path / "other")
    refused = settings.with_overrides(ca_file=str(other.ca_file))
    with pytest.raises(ServerSelectionTimeoutError, match="CERTIFICATE_VERIFY_FAILED"):
        client = await init_db(refused, [DesignDoc])
        try:
            await client["tlscheck"].command("ping")
        finally:
            await client.close()
