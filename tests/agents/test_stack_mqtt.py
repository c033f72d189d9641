"""`flame up` runs a Mosquitto of its own: MQTT jobs run as written, each on a client of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from flame_common.embedded import EmbeddedMongo
from flame_controller.mosquitto_accounts import MosquittoAccounts
from flame_sdk import localstack
from flame_sdk.cli.mqtt import ADMIN, DYNSEC_PLUGIN
from flame_sdk.cli.services import SERVICES, service_env
from tests.agents.stack import WARM_ML, LocalStack, local_stack, wait_state
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TWO_TIER = Path(__file__).parents[2] / "examples" / "two_tier_fedavg"


def test_only_the_controller_is_given_the_broker_admin_logins() -> None:
    env = {"FLAME_MQTT_ADMIN_URL": "mqtt://a:b@h:1", "FLAME_RABBIT_ADMIN_URL": "http://a:b@h/"}
    env["FLAME_NAMESPACE"] = "ns"
    for service in SERVICES:
        got = service_env(service, env)
        assert got["FLAME_NAMESPACE"] == "ns"
        has_admin = "FLAME_MQTT_ADMIN_URL" in got and "FLAME_RABBIT_ADMIN_URL" in got
        assert has_admin == (service.name == "controller"), service.name


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    if not DYNSEC_PLUGIN.is_file():
        pytest.skip(f"Mosquitto's dynamic-security plugin is not installed ({DYNSEC_PLUGIN})")
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("stack"), **WARM_ML) as s:
        yield s


def mqtt_port(stack: LocalStack) -> int:
    info = json.loads((stack.home / "run" / "mqtt.pid").read_text())
    return int(info["port"])


def test_flame_status_shows_the_stacks_mosquitto(stack: LocalStack) -> None:
    shown = stack.flame("status")
    line = next(x for x in shown.stdout.splitlines() if x.startswith("mqtt"))
    assert "running" in line and f"port {mqtt_port(stack)} ok" in line
    secret = stack.home / "mqtt" / "admin.secret"
    assert secret.stat().st_mode & 0o777 == 0o600


async def test_an_anonymous_client_is_refused(stack: LocalStack) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", mqtt_port(stack), timeout=10):
            pass


async def test_an_mqtt_job_runs_on_a_client_of_its_own_gone_after(stack: LocalStack) -> None:
    port = mqtt_port(stack)
    password = (stack.home / "mqtt" / "admin.secret").read_text().strip()
    admin = MosquittoAccounts(f"mqtt://{ADMIN}:{password}@127.0.0.1:{port}", stack.namespace)
    async with stack.client() as client:
        job_id = await localstack.create_example_job(
            client,
            TWO_TIER,
            hyperparameters={"rounds": 1, "epochs": 1},
            backend="mqtt",
            max_run_time=200,
        )
        await client.jobs.start(job_id)
        await eventually(lambda: _has(admin, job_id), timeout=30, what="the job's MQTT client")
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 240)
        tasks = await client.tasks.list(job_id)
        assert status.state.value == "completed", [(t.role, t.log[-300:]) for t in tasks]
        for task in tasks:  # what users read: the broker, no credentials
            hosts = [b.host for b in (await client.tasks.config(job_id, task.task_id)).brokers]
            assert f"mqtt://127.0.0.1:{port}" in hosts
            assert not any("@" in h for h in hosts), hosts
    await eventually(lambda: _gone(admin, job_id), timeout=30, what="the job's client deleted")


async def _has(admin: MosquittoAccounts, job_id: str) -> bool:
    return job_id in await admin.jobs()


async def _gone(admin: MosquittoAccounts, job_id: str) -> bool:
    return job_id not in await admin.jobs()
