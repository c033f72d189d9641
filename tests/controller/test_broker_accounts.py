"""Per-job broker users: the port on its memory adapter, the controller's use of it (memory
stores), the apiserver's view of a task config, and the RabbitMQ adapter on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused, ProbableAuthenticationError

from flame_apiserver.views import agent_task_config, task_config
from flame_common.datanames import (
    data_resources,
    exchange_name,
    queue_name,
    with_credentials,
    without_credentials,
)
from flame_common.jobs_read import TaskRecord as ReadTask
from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from flame_controller.broker_accounts import (
    BrokerAccountsError,
    BrokerLogin,
    JobAccounts,
    MemoryAccounts,
    new_login,
    sweep,
    user_name,
)
from flame_controller.memory import MemoryJobStore
from flame_controller.rabbit_accounts import RabbitAccounts, vhost_of
from flame_controller.service import Controller
from schemas import commands as c
from schemas.errors import FlameError
from schemas.events import EventBase, TaskStatusChanged, TaskStatusChangedEvent
from schemas.job import JobSpec
from schemas.states import JobState
from tests.conftest import track_namespace
from tests.controller.conftest import memory_catalog, mnist

ADMIN_URL = "http://guest:guest@127.0.0.1:15672/"


# --- the port on its memory adapter ------------------------------------------------------------


async def test_memory_accounts_open_close_and_sweep() -> None:
    accounts = MemoryAccounts("ns")
    jobs = JobAccounts("ns", [accounts])
    first = await jobs.open("j1")
    again = await jobs.open("j1")
    assert first.user == again.user == "ns.job.j1" and again.sorts == ("rabbitmq",)
    assert first.password != again.password and len(again.password) >= 24
    assert accounts.users["ns.job.j1"] == (again.password, data_resources("j1"))
    assert again.password not in repr(again)
    await jobs.open("j2")
    accounts.users["other.job.j9"] = ("x", "")  # another namespace's user: never ours to touch
    assert await jobs.jobs() == {"j1", "j2"}
    assert await sweep(jobs, ["j2"]) == ["j1"]
    assert set(accounts.users) == {"ns.job.j2", "other.job.j9"}
    await jobs.close("j2")
    await jobs.close("j2")  # absent: nothing to do
    assert set(accounts.users) == {"other.job.j9"}


async def test_a_job_gets_the_same_login_on_every_broker() -> None:
    rabbit, mqtt = MemoryAccounts("ns"), MemoryAccounts("ns", sort="mqtt")
    jobs = JobAccounts("ns", [rabbit, mqtt])
    login = await jobs.open("j1")
    assert login.sorts == ("mqtt", "rabbitmq") and jobs.sorts == {"mqtt", "rabbitmq"}
    assert rabbit.users["ns.job.j1"][0] == mqtt.users["ns.job.j1"][0] == login.password
    mqtt.users["ns.job.j2"] = ("x", "")  # left by a crash on one broker only
    assert await jobs.jobs() == {"j1", "j2"}
    assert await sweep(jobs, ["j1"]) == ["j2"]
    assert set(rabbit.users) == set(mqtt.users) == {"ns.job.j1"}


async def test_a_broker_refusing_a_login_leaves_none_on_the_others() -> None:
    class Refusing(MemoryAccounts):
        async def open(self, job_id: str, login: BrokerLogin) -> None:
            raise BrokerAccountsError("cannot create MQTT client: createClient: Internal error")

    rabbit = MemoryAccounts("ns")
    jobs = JobAccounts("ns", [rabbit, Refusing("ns", sort="mqtt")])
    with pytest.raises(BrokerAccountsError, match="Internal error"):
        await jobs.open("j1")
    assert rabbit.users == {}


async def test_closing_tries_every_broker_then_raises_the_first_failure() -> None:
    class Failing(MemoryAccounts):
        async def close(self, job_id: str) -> None:
            raise BrokerAccountsError("cannot delete broker user: management API answered 503")

    mqtt = MemoryAccounts("ns", sort="mqtt")
    jobs = JobAccounts("ns", [Failing("ns"), mqtt])
    await jobs.open("j1")
    with pytest.raises(BrokerAccountsError, match="503"):
        await jobs.close("j1")
    assert mqtt.users == {}


def test_data_resources_cover_the_job_and_nothing_else() -> None:
    import re

    names = re.compile(data_resources("65aa"))
    assert names.match(exchange_name("65aa")) and names.match(queue_name("65aa"))
    for other in ("flame.data.65aab", "flame.data.65a", "ns.events", "amq.gen-x", "amq.default"):
        assert not names.match(other), other


# --- the controller on memory stores -----------------------------------------------------------


class Memory:
    def __init__(self, tmp: Path, accounts: list[MemoryAccounts], **overrides: Any) -> None:
        settings = FlameSettings(
            home=tmp, namespace="memory", controller_store="memory", **overrides
        )
        self.store = MemoryJobStore(settings.stop_grace_seconds)
        self.published: list[EventBase] = []
        catalog = memory_catalog(mnist())
        jobs = JobAccounts("memory", accounts) if accounts else None
        self.controller = Controller(settings, self.store, catalog, self.published.extend, jobs)

    async def create(self) -> str:
        spec = JobSpec.model_validate(mnist().spec)
        created = await self.controller.execute(c.CreateJob(user_id="alice", spec=spec))
        return str(created["id"])

    async def end(self, job_id: str, state: JobState) -> None:
        for task in await self.store.tasks(job_id):
            event = TaskStatusChangedEvent(
                payload=TaskStatusChanged(state=state),
                job_id=job_id,
                task_id=task.task_id,
                source="test",
            )
            await self.controller.observe(job_id, [event])


async def test_a_started_job_gets_its_own_login_and_loses_it_when_it_ends(tmp_path: Path) -> None:
    accounts = MemoryAccounts("memory")
    m = Memory(tmp_path, [accounts])
    job_id = await m.create()
    tasks = await m.store.tasks(job_id)
    brokers = [b for t in tasks for b in t.config["brokers"] if b["sort"] == "rabbitmq"]
    assert brokers and all(b["host"] == "amqp://127.0.0.1:5672/" for b in brokers)
    assert accounts.users == {} and {t.broker_user for t in tasks} == {""}

    await m.controller.execute(c.StartJob(user_id="alice", job_id=job_id))
    user = user_name("memory", job_id)
    password = accounts.users[user][0]
    tasks = await m.store.tasks(job_id)
    assert {(t.broker_user, t.broker_password) for t in tasks} == {(user, password)}
    assert not any(password in e.model_dump_json() for e in m.published)

    await m.end(job_id, JobState.RUNNING)
    assert user in accounts.users
    await m.end(job_id, JobState.COMPLETED)
    job = await m.store.job(job_id)
    assert job is not None and job.state == "completed"
    assert accounts.users == {}
    assert {(t.broker_user, t.broker_password) for t in await m.store.tasks(job_id)} == {("", "")}


async def test_a_start_the_accounts_refuse_fails_and_changes_nothing(tmp_path: Path) -> None:
    class Refusing(MemoryAccounts):
        async def open(self, job_id: str, login: BrokerLogin) -> None:
            raise BrokerAccountsError("cannot create broker user: management API answered 503")

    m = Memory(tmp_path, [Refusing("memory")])
    job_id = await m.create()
    with pytest.raises(FlameError, match="management API answered 503"):
        await m.controller.execute(c.StartJob(user_id="alice", job_id=job_id))
    job = await m.store.job(job_id)
    assert job is not None and job.state == "ready"


async def test_without_accounts_configs_keep_the_shared_broker_url(tmp_path: Path) -> None:
    m = Memory(tmp_path, [])
    job_id = await m.create()
    await m.controller.execute(c.StartJob(user_id="alice", job_id=job_id))
    hosts = {b["host"] for t in await m.store.tasks(job_id) for b in t.config["brokers"]}
    assert hosts == {"amqp://guest:guest@127.0.0.1:5672/", "mqtt://127.0.0.1:1883"}


async def test_configs_keep_no_credentials_of_the_brokers_jobs_have_logins_on(
    tmp_path: Path,
) -> None:
    mqtt = MemoryAccounts("memory", sort="mqtt")
    shared = [
        {"sort": "rabbitmq", "host": "amqp://guest:guest@127.0.0.1:5672/"},
        {"sort": "mqtt", "host": "shared:secret@127.0.0.1:1883"},
    ]
    m = Memory(tmp_path, [mqtt], job_brokers=shared)
    job_id = await m.create()
    await m.controller.execute(c.StartJob(user_id="alice", job_id=job_id))
    hosts = {b["host"] for t in await m.store.tasks(job_id) for b in t.config["brokers"]}
    assert hosts == {"amqp://guest:guest@127.0.0.1:5672/", "127.0.0.1:1883"}
    user = user_name("memory", job_id)
    tasks = await m.store.tasks(job_id)
    assert {(t.broker_user, t.broker_password) for t in tasks} == {(user, mqtt.users[user][0])}


# --- what the apiserver serves ------------------------------------------------------------------


def _read_task(**login: Any) -> ReadTask:
    config = {
        "backend": "rabbitmq",
        "brokers": [
            {"sort": "rabbitmq", "host": "amqp://127.0.0.1:5672/"},
            {"sort": "mqtt", "host": "127.0.0.1:1883"},
        ],
        "job": {"id": "j1", "name": "d"},
        "role": "trainer",
        "channels": [],
    }
    from datetime import UTC, datetime

    return ReadTask("j1", "t1", "trainer", "key", datetime.now(UTC), config=config, **login)


def test_only_the_agent_is_served_the_login() -> None:
    task = _read_task(
        broker_user="ns.job.j1", broker_password="p@ss/word", broker_sorts=("rabbitmq",)
    )
    served = agent_task_config(task)["brokers"]
    assert served[0]["host"] == "amqp://ns.job.j1:p%40ss%2Fword@127.0.0.1:5672/"
    assert served[1]["host"] == "127.0.0.1:1883"  # no MQTT login: as configured
    assert "p@ss" not in str(task_config(task)) and "p@ss" not in repr(task)
    assert agent_task_config(_read_task())["brokers"][0]["host"] == "amqp://127.0.0.1:5672/"


def test_mqtt_brokers_are_served_the_login_when_the_job_has_one_there() -> None:
    task = _read_task(
        broker_user="ns.job.j1", broker_password="p@ss/word", broker_sorts=("mqtt", "rabbitmq")
    )
    served = agent_task_config(task)["brokers"]
    assert served[0]["host"] == "amqp://ns.job.j1:p%40ss%2Fword@127.0.0.1:5672/"
    assert served[1]["host"] == "mqtt://ns.job.j1:p%40ss%2Fword@127.0.0.1:1883"
    assert "p@ss" not in str(task_config(task))
    task.config["brokers"][1]["host"] = "mqtts://mq.example:8883?cafile=/etc/flame/ca.pem"
    served = agent_task_config(replace(task, broker_sorts=("mqtt",)))["brokers"]
    assert served[0]["host"] == "amqp://127.0.0.1:5672/"  # no RabbitMQ login: as configured
    assert served[1]["host"] == (
        "mqtts://ns.job.j1:p%40ss%2Fword@mq.example:8883?cafile=/etc/flame/ca.pem"
    )


def test_broker_urls_gain_and_lose_credentials_with_or_without_a_scheme() -> None:
    assert with_credentials("h:1883", "u", "p", scheme="mqtt") == "mqtt://u:p@h:1883"
    assert with_credentials("mqtt://old:pw@h", "u", "p") == "mqtt://u:p@h"
    assert without_credentials("old:pw@h:1883") == "h:1883"
    assert without_credentials("mqtt://old:pw@h:1883") == "mqtt://h:1883"
    assert without_credentials("h:1883") == "h:1883"


# --- the RabbitMQ adapter on the real broker ---------------------------------------------------


@pytest.fixture
async def rabbit_accounts(rabbit_url: str) -> AsyncIterator[RabbitAccounts]:
    async with RabbitAccounts(ADMIN_URL, f"t{uuid.uuid4().hex[:10]}", vhost_of(rabbit_url)) as a:
        try:
            await a.check()
        except BrokerAccountsError as exc:
            pytest.fail(f"{exc} (run scripts/services.sh: it enables the management plugin)")
        yield a
        for job_id in await a.jobs():
            await a.close(job_id)


async def _connect(rabbit_url: str, user: str, password: str) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(with_credentials(rabbit_url, user, password), timeout=10)


@pytest.mark.integration
async def test_a_job_user_may_use_its_data_plane_and_nothing_else(
    rabbit_accounts: RabbitAccounts, rabbit_url: str
) -> None:
    job, victim = uuid.uuid4().hex[:24], uuid.uuid4().hex[:24]
    events_exchange = f"{rabbit_accounts.namespace}.events"
    admin = await aio_pika.connect(rabbit_url)
    async with admin:
        channel = await admin.channel()
        await channel.declare_exchange(events_exchange, aio_pika.ExchangeType.TOPIC)
        victim_exchange = await channel.declare_exchange(
            exchange_name(victim), aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        victim_queue = await channel.declare_queue(queue_name(victim), exclusive=True)
        await victim_queue.bind(victim_exchange, "#")
        login = new_login(rabbit_accounts.namespace, job)
        await rabbit_accounts.open(job, login)
        assert login.user == user_name(rabbit_accounts.namespace, job)
        assert await rabbit_accounts.jobs() == {job}

        connection = await _connect(rabbit_url, login.user, login.password)
        async with connection:
            # its own exchange and named queues: declare, bind, publish, consume
            mine = await connection.channel(publisher_confirms=True)
            exchange = await mine.declare_exchange(
                exchange_name(job), aio_pika.ExchangeType.TOPIC, auto_delete=True
            )
            queue = await mine.declare_queue(queue_name(job), exclusive=True, auto_delete=True)
            await queue.bind(exchange, "u.#")
            await exchange.publish(aio_pika.Message(b"hello"), routing_key="u.x")
            received = await queue.get(timeout=5, fail=False)
            assert received is not None and received.body == b"hello"

            forged = aio_pika.Message(b'{"type": "task.status_changed"}')
            attempts = {
                "publish a control event": lambda ch: _publish(
                    ch, events_exchange, "task.status_changed", forged
                ),
                "publish on another job's exchange": lambda ch: _publish(
                    ch, exchange_name(victim), "#", forged
                ),
                "publish on the default exchange": lambda ch: _publish(
                    ch, "", victim_queue.name, forged
                ),
                "declare another job's queue": lambda ch: ch.declare_queue(
                    queue_name(victim), exclusive=True
                ),
                "declare a server-named queue": lambda ch: ch.declare_queue("", exclusive=True),
                "bind to another job's exchange": lambda ch: _bind_other(ch, job, victim),
                "consume another job's queue": lambda ch: _consume(ch, victim_queue.name),
            }
            for what, attempt in attempts.items():
                channel_ = await connection.channel(publisher_confirms=True)
                with pytest.raises(ChannelAccessRefused):
                    await attempt(channel_)
                    pytest.fail(f"could {what}")
        assert await victim_queue.get(timeout=1, fail=False) is None

        lingering = await _connect(rabbit_url, login.user, login.password)
        await rabbit_accounts.close(job)
        await rabbit_accounts.close(job)  # already gone: nothing to do
        with pytest.raises(Exception, match=r"closed|CONNECTION_FORCED"):  # the broker drops it
            await asyncio.wait_for(lingering.channel(), 10)
        assert await rabbit_accounts.jobs() == set()
        with pytest.raises(ProbableAuthenticationError):
            await _connect(rabbit_url, login.user, login.password)


async def _publish(
    channel: aio_pika.abc.AbstractChannel, exchange: str, key: str, message: aio_pika.Message
) -> None:
    target = await channel.get_exchange(exchange, ensure=False) if exchange else None
    await (target or channel.default_exchange).publish(message, routing_key=key)


async def _bind_other(channel: aio_pika.abc.AbstractChannel, job: str, victim: str) -> None:
    queue = await channel.declare_queue(queue_name(job), exclusive=True, auto_delete=True)
    await channel.channel.queue_bind(queue.name, exchange_name(victim), routing_key="#")


async def _consume(channel: aio_pika.abc.AbstractChannel, name: str) -> None:
    queue = await channel.get_queue(name, ensure=False)
    await queue.consume(lambda _: None)  # type: ignore[arg-type,return-value]


@pytest.mark.integration
async def test_sweep_deletes_the_users_of_jobs_no_longer_open(
    rabbit_accounts: RabbitAccounts,
) -> None:
    for job in ("a1", "b2", "c3"):
        await rabbit_accounts.open(job, new_login(rabbit_accounts.namespace, job))
    assert await sweep(rabbit_accounts, ["b2", "z9"]) == ["a1", "c3"]
    assert await rabbit_accounts.jobs() == {"b2"}


async def test_an_unreachable_management_api_is_a_clear_error() -> None:
    from flame_common.embedded import free_port

    url = f"http://guest:guest@127.0.0.1:{free_port()}/"
    async with RabbitAccounts(url, "ns") as accounts:
        with pytest.raises(BrokerAccountsError, match="unreachable") as info:
            await accounts.check()
    assert "guest" not in str(info.value)


@pytest.mark.integration
async def test_the_controller_deletes_stale_job_users_when_it_starts(
    rabbit_accounts: RabbitAccounts, tmp_path: Path
) -> None:
    stale = "65aa00000000000000000001"  # a job no store knows
    await rabbit_accounts.open(stale, new_login(rabbit_accounts.namespace, stale))
    settings = FlameSettings(
        home=tmp_path,
        namespace=track_namespace(rabbit_accounts.namespace),
        controller_store="memory",
        rabbit_admin_url=ADMIN_URL,
    )
    async with running_controller(settings) as controller:
        assert controller.accounts is not None
    assert await rabbit_accounts.jobs() == set()


async def test_without_an_admin_url_the_controller_runs_on_shared_credentials(
    tmp_path: Path, rabbit_url: str
) -> None:
    settings = FlameSettings(
        home=tmp_path,
        namespace=track_namespace(f"t{uuid.uuid4().hex[:10]}"),
        controller_store="memory",
        rabbit_admin_url="",
    )
    async with running_controller(settings) as controller:
        assert controller.accounts is None
