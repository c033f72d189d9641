"""Per-job MQTT clients on a real Mosquitto with the dynamic-security plugin."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiomqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from flame_common.certs import ensure_local_certs
from flame_common.datanames import with_credentials
from flame_common.embedded import free_port
from flame_common.settings import FlameSettings
from flame_controller.app import open_accounts
from flame_controller.broker_accounts import (
    BrokerAccountsError,
    BrokerLogin,
    JobAccounts,
    MemoryAccounts,
    new_login,
    sweep,
    user_name,
)
from flame_controller.mosquitto_accounts import MosquittoAccounts, job_topics
from tests.sdk.backends.conftest import Cluster
from tests.support.mosquitto import DynsecBroker, dynsec_mosquitto
from tests.support.tls import tls_listener

pytestmark = pytest.mark.integration

WAIT = 5.0  # seconds for a message that should arrive


@pytest.fixture
async def accounts(dynsec_broker: DynsecBroker) -> MosquittoAccounts:
    accounts = MosquittoAccounts(dynsec_broker.admin_url, f"t{uuid.uuid4().hex[:10]}")
    await accounts.check()
    return accounts


def _client(broker: DynsecBroker, user: str | None, password: str | None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=user,
        password=password,
        identifier=f"test-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=WAIT,
    )


def _as(broker: DynsecBroker, login: BrokerLogin) -> aiomqtt.Client:
    return _client(broker, login.user, login.password)


def _code(granted: int | ReasonCode) -> int:
    return granted if isinstance(granted, int) else granted.value


async def _next(client: aiomqtt.Client) -> tuple[str, bytes]:
    message = await asyncio.wait_for(anext(client.messages), WAIT)
    assert isinstance(message.payload, bytes)
    return message.topic.value, message.payload


async def _open(accounts: MosquittoAccounts, job_id: str) -> BrokerLogin:
    login = new_login(accounts.namespace, job_id, [accounts.sort])
    await accounts.open(job_id, login)
    return login


async def test_a_job_client_may_use_its_topics_and_nothing_else(
    accounts: MosquittoAccounts, dynsec_broker: DynsecBroker
) -> None:
    job, victim = uuid.uuid4().hex[:24], uuid.uuid4().hex[:24]
    login, other = await _open(accounts, job), await _open(accounts, victim)
    assert login.user == user_name(accounts.namespace, job)
    assert await accounts.jobs() == {job, victim}
    mine_topic = f"/flame/{job}/param/default/BROADCAST/trainer/t1"
    their_topic = f"/flame/{victim}/param/default/BROADCAST/trainer/t9"
    admin = _client(dynsec_broker, dynsec_broker.admin, dynsec_broker.password)
    async with _as(dynsec_broker, login) as mine, _as(dynsec_broker, other) as theirs, admin:
        await admin.subscribe("#", qos=1)  # sees every non-$ publication that gets through
        for allowed in job_topics(job):
            (granted,) = await mine.subscribe(allowed, qos=1)
            assert _code(granted) == 1, (allowed, granted)  # SUBACK: granted QoS 1
        forbidden = [
            *job_topics(victim),
            "/flame/#",
            "/flame/+/param/default/BROADCAST/#",
            "#",
            "$CONTROL/dynamic-security/v1/response",
            "$SYS/#",
        ]
        for topic in forbidden:
            (refused,) = await mine.subscribe(topic, qos=1)
            assert _code(refused) == 0x87, (topic, refused)  # SUBACK: Not authorized
        await theirs.subscribe(job_topics(victim)[1], qos=1)

        await theirs.publish(their_topic, b"their weights", qos=1)
        for topic in (f"/flame/{victim}/param/default/UNICAST/x/y/trainer/t9", f"/flame/{victim}"):
            await mine.publish(topic, b"forged", qos=1)
        await mine.publish("/elsewhere", b"forged", qos=1)
        await mine.publish(mine_topic, b"my weights", qos=1)
        await theirs.publish(their_topic, b"marker", qos=1)
        # each client gets its own job's messages in order, and nothing in between
        assert await _next(mine) == (mine_topic, b"my weights")
        assert [await _next(theirs), await _next(theirs)] == [
            (their_topic, b"their weights"),
            (their_topic, b"marker"),
        ]
        assert [await _next(admin) for _ in range(3)] == [
            (their_topic, b"their weights"),
            (mine_topic, b"my weights"),
            (their_topic, b"marker"),
        ]

        # the plugin's control topic: a forged command changes nothing
        forged = [
            {
                "command": "createClient",
                "username": user_name(accounts.namespace, "x"),
                "password": "x",
            },
            {"command": "deleteClient", "username": other.user},
        ]
        await mine.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands": forged}), qos=1)
        assert await accounts.jobs() == {job, victim}

    for user, password in ((login.user, "wrong"), (None, None), ("nobody", login.password)):
        with pytest.raises(
            aiomqtt.MqttCodeError, match=r"Not authorized|Bad user name or password"
        ):
            async with _client(dynsec_broker, user, password):
                pass


async def test_closing_drops_the_job_client_and_refuses_its_login(
    accounts: MosquittoAccounts, dynsec_broker: DynsecBroker
) -> None:
    job, kept = uuid.uuid4().hex[:24], uuid.uuid4().hex[:24]
    login = await _open(accounts, job)
    await _open(accounts, kept)
    async with _as(dynsec_broker, login) as lingering:
        await accounts.close(job)
        with pytest.raises(aiomqtt.MqttError):  # the broker disconnects it
            await asyncio.wait_for(anext(lingering.messages), WAIT)
    await accounts.close(job)  # already gone: nothing to do
    assert await accounts.jobs() == {kept}
    with pytest.raises(aiomqtt.MqttCodeError):
        async with _as(dynsec_broker, login):
            pass


async def test_reopening_resets_the_password(
    accounts: MosquittoAccounts, dynsec_broker: DynsecBroker
) -> None:
    job = uuid.uuid4().hex[:24]
    first, second = await _open(accounts, job), await _open(accounts, job)
    with pytest.raises(aiomqtt.MqttCodeError):
        async with _as(dynsec_broker, first):
            pass
    async with _as(dynsec_broker, second) as client:
        await client.publish(f"/flame/{job}", b"t1:online", qos=1)


async def test_sweep_deletes_the_clients_of_jobs_no_longer_open(
    accounts: MosquittoAccounts,
) -> None:
    for job in ("a1", "b2", "c3"):
        await _open(accounts, job)
    assert await sweep(accounts, ["b2", "z9"]) == ["a1", "c3"]
    assert await accounts.jobs() == {"b2"}


async def test_refusals_are_clear_errors_without_the_password(
    accounts: MosquittoAccounts, dynsec_broker: DynsecBroker
) -> None:
    secret = "s3cret-admin-password"
    cases = {
        f"mqtt://{dynsec_broker.admin}:{secret}@127.0.0.1:{dynsec_broker.port}": "refused",
        f"mqtt://flame-admin:{secret}@127.0.0.1:{free_port()}": "unreachable",
    }
    job_login = await _open(accounts, uuid.uuid4().hex[:24])
    as_job = (
        f"mqtt://{quote(job_login.user)}:{quote(job_login.password)}@127.0.0.1:{dynsec_broker.port}"
    )
    cases[as_job] = "may not read"
    for url, reason in cases.items():
        with pytest.raises(BrokerAccountsError, match=reason) as info:
            await MosquittoAccounts(url, "ns").check()
        assert "reach the dynamic-security plugin" in str(info.value)
        assert secret not in str(info.value) and job_login.password not in str(info.value)
    with pytest.raises(ValueError, match=r"mqtt\(s\)://"):
        MosquittoAccounts(f"http://admin:{secret}@127.0.0.1:1", "ns")
    with pytest.raises(ValueError, match="cannot be used in an MQTT topic"):
        await _open(accounts, "a/#")


async def test_the_controller_opens_mqtt_accounts_only_when_configured(
    dynsec_broker: DynsecBroker, tmp_path: Path
) -> None:
    base = FlameSettings(
        home=tmp_path,
        controller_store="memory",
        rabbit_admin_url="",
        job_brokers=[{"sort": "mqtt", "host": f"127.0.0.1:{dynsec_broker.port}"}],
    )
    async with open_accounts(base.with_overrides(mqtt_admin_url=dynsec_broker.admin_url)) as on:
        assert isinstance(on, JobAccounts) and on.sorts == {"mqtt"}
        assert isinstance(on.brokers[0], MosquittoAccounts)
    async with open_accounts(base) as off:
        assert off is None
    wrong = dynsec_broker.admin_url.replace(dynsec_broker.password, "wrong")
    async with open_accounts(base.with_overrides(mqtt_admin_url=wrong)) as away:
        assert away is None


async def test_the_plugin_is_driven_over_tls_verified_with_the_stacks_ca(tmp_path: Path) -> None:
    certs, other = ensure_local_certs(tmp_path / "certs"), ensure_local_certs(tmp_path / "other")
    with dynsec_mosquitto(tmp_path, tls_listener(certs)) as broker:
        url = broker.admin_url.replace("mqtt://", "mqtts://")
        accounts = MosquittoAccounts(url, "ns", ca_file=str(certs.ca_file))
        await accounts.check()
        await MosquittoAccounts(f"{url}?cafile={certs.ca_file}", "ns").check()
        with pytest.raises(BrokerAccountsError, match="CERTIFICATE_VERIFY_FAILED"):
            await MosquittoAccounts(url, "ns", ca_file=str(other.ca_file)).check()
        login = new_login("ns", "65aa", ["mqtt"])
        await accounts.open("65aa", login)
        assert await accounts.jobs() == {"65aa"}
        await accounts.close("65aa")
        assert await accounts.jobs() == set()


@pytest.fixture
async def clusters() -> AsyncIterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for cluster in made:
        await cluster.close()


async def test_mqtt_backends_talk_with_the_job_login(
    dynsec_broker: DynsecBroker, clusters: list[Cluster]
) -> None:
    mqtt = MosquittoAccounts(dynsec_broker.admin_url, f"t{uuid.uuid4().hex[:10]}")
    jobs = JobAccounts(mqtt.namespace, [MemoryAccounts(mqtt.namespace), mqtt])
    cluster = Cluster("mqtt", "")
    login = await jobs.open(cluster.job_id)
    # the URL the apiserver serves: mqtt://user:password@host:port
    cluster.broker = with_credentials(
        f"127.0.0.1:{dynsec_broker.port}", login.user, login.password, scheme="mqtt"
    )
    clusters.append(cluster)
    await cluster.unicast_once(b"weights of the job")
    await jobs.close(cluster.job_id)
    assert await mqtt.jobs() == set()
