"""TLS everywhere it travels: `flame up --tls` serves HTTPS that flamectl, FlameClient, flamelets
and the deployer verify; the services and the jobs' data plane use a RabbitMQ node of its own
that listens on AMQPS and HTTPS only, with the stack's server certificate."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flame_common.certs import LocalCerts, ensure_local_certs
from flame_common.embedded import EmbeddedMongo
from flame_sdk.client import FlameClient
from flame_sdk.localstack import LocalStack, local_stack, wait_state
from flamelet.manifest import ManifestError, fetch_manifest
from schemas.errors import Unavailable
from tests.agents.stack import WARM_ML
from tests.agents.test_broker_users import create_two_tier_job
from tests.support.tls import TlsRabbit, tls_rabbitmq

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@dataclass
class TlsStack:
    stack: LocalStack
    rabbit: TlsRabbit  # the stack's only broker: AMQPS and HTTPS management listeners only


@pytest.fixture(scope="module")
def tls_stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsStack]:
    tmp = tmp_path_factory.mktemp("tls")
    # the certificates `flame up --tls` makes (and keeps), made first so the broker serves them
    certs = ensure_local_certs(tmp / "home" / "tls")
    with tls_rabbitmq(certs, tmp / "rabbit") as rabbit:
        amqps = f"amqps://guest:guest@127.0.0.1:{rabbit.port}/"
        with local_stack(
            mongo_server.url,
            tmp,
            f"tls{uuid.uuid4().hex[:8]}",
            tls=True,
            **WARM_ML,
            FLAME_RABBIT_URL=amqps,
            FLAME_RABBIT_ADMIN_URL=f"https://guest:guest@127.0.0.1:{rabbit.admin_port}/",
            FLAME_JOB_BROKERS=json.dumps(
                [{"sort": "rabbitmq", "host": f"amqps://127.0.0.1:{rabbit.port}/"}]
            ),
        ) as stack:
            yield TlsStack(stack, rabbit)


def flamectl(stack: LocalStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "flamectl"), *args]
    environ = {k: v for k, v in stack.env.items() if k != "FLAME_CA_FILE"} | env
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)


def test_up_tls_writes_the_certificates_and_an_https_config(tls_stack: TlsStack) -> None:
    stack = tls_stack.stack
    certs = LocalCerts(stack.home / "tls")
    for key in (certs.key_file, certs.ca_key):
        assert key.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load((stack.home / "config.yaml").read_text())
    assert config["apiserver"] == {"endpoint": stack.endpoint, "caFile": str(certs.ca_file)}
    assert stack.endpoint.startswith("https://")
    status = stack.flame("status")
    assert status.returncode == 0, status.stdout
    assert f"http {stack.endpoint} ok" in status.stdout


def test_flamectl_verifies_the_apiserver_certificate(tls_stack: TlsStack, tmp_path: Path) -> None:
    stack = tls_stack.stack
    assert flamectl(stack, "get", "designs").returncode == 0  # the CA from config.yaml
    no_ca = tmp_path / "config.yaml"
    config = yaml.safe_load((stack.home / "config.yaml").read_text())
    del config["apiserver"]["caFile"]
    no_ca.write_text(yaml.safe_dump(config))
    refused = flamectl(stack, "--config", str(no_ca), "get", "designs")
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "--ca-file" in refused.stderr
    ca = str(LocalCerts(stack.home / "tls").ca_file)
    given = flamectl(stack, "--config", str(no_ca), "--ca-file", ca, "get", "designs")
    assert given.returncode == 0, given.stderr
    by_env = flamectl(stack, "--config", str(no_ca), "get", "designs", FLAME_CA_FILE=ca)
    assert by_env.returncode == 0, by_env.stderr
    insecure = flamectl(stack, "--config", str(no_ca), "--insecure", "get", "designs")
    assert insecure.returncode == 0, insecure.stderr


async def test_a_client_refuses_an_unknown_ca_unless_insecure(
    tls_stack: TlsStack, tmp_path: Path
) -> None:
    stack = tls_stack.stack
    other = ensure_local_certs(tmp_path / "other-ca")  # a CA that did not sign the server's
    async with FlameClient(stack.endpoint, "alice", token=stack.token) as system_cas:
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await system_cas.designs.list()
    async with FlameClient(
        stack.endpoint, "alice", token=stack.token, ca_file=other.ca_file
    ) as wrong:
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await wrong.designs.list()
    async with FlameClient(stack.endpoint, "alice", token=stack.token, verify=False) as insecure:
        assert isinstance(await insecure.designs.list(), list)
    async with stack.client() as trusting:
        assert isinstance(await trusting.designs.list(), list)


async def test_flamelet_fetches_over_https_and_refuses_an_unknown_ca(
    tls_stack: TlsStack, tmp_path: Path
) -> None:
    stack = tls_stack.stack
    other = ensure_local_certs(tmp_path / "other-ca")
    with pytest.raises(ManifestError, match="does not trust") as refused:
        await fetch_manifest(stack.endpoint, "j", "t", "k", ca_file=str(other.ca_file))
    assert not refused.value.retryable
    # through the handshake with the stack's CA: the apiserver itself answers (no such task)
    with pytest.raises(ManifestError, match="apiserver answered 4") as answered:
        await fetch_manifest(stack.endpoint, "j", "t", "k", ca_file=stack.ca_file)
    assert not answered.value.retryable


def test_the_broker_node_listens_on_tls_only(tls_stack: TlsStack) -> None:
    listeners = tls_stack.rabbit.ctl("rabbitmq-diagnostics", "-q", "listeners")
    assert listeners.returncode == 0, listeners.stderr
    protocols = {
        line.split("protocol: ")[1].split(",")[0]
        for line in listeners.stdout.splitlines()
        if "protocol: " in line
    }
    assert protocols == {"amqp/ssl", "https", "clustering"}


async def test_a_training_job_runs_entirely_over_tls(tls_stack: TlsStack) -> None:
    """HTTPS to the apiserver (this client, the deployer, every flamelet), AMQPS for the
    services' bus and for the job's data plane (its own broker user, made through the HTTPS
    management API): the two-tier digits example, 2 rounds."""
    stack = tls_stack.stack
    async with stack.client() as client:
        job_id = await create_two_tier_job(client, rounds=2)
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 240)
        tasks = await client.tasks.list(job_id)
        assert status.state.value == "completed", [(t.role, t.log[-300:]) for t in tasks]
        assert len(tasks) == 5 and {t.state.value for t in tasks} == {"completed"}
        broker = f"amqps://127.0.0.1:{tls_stack.rabbit.port}/?cafile={stack.ca_file}"
        for task in tasks:  # what the job's agents were given: AMQPS and the CA to verify with
            config = await client.tasks.config(job_id, task.task_id)
            assert [b.host for b in config.brokers] == [broker]
    users = tls_stack.rabbit.ctl("rabbitmqctl", "-q", "list_users")
    assert f"{stack.namespace}.job." not in users.stdout  # the job user came and went
