"""Role code holds no control-plane credentials, through a `flame up` stack whose services use a
service account of their own: each job runs with a broker user limited to its data plane."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from flame_common.datanames import exchange_name
from flame_common.embedded import EmbeddedMongo
from flame_sdk import localstack
from flame_sdk.client import FlameClient
from tests.agents.helpers import ROLES
from tests.agents.stack import EXAMPLES, WARM_ML, LocalStack, local_stack, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")
TWO_TIER = Path(__file__).parents[2] / "examples" / "two_tier_fedavg"


@pytest.fixture(scope="module")
def service_account(rabbit_url: str) -> Iterator[tuple[str, str]]:
    """An administrator the services use instead of guest; its password is the secret to hide."""
    user, password = f"svc-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
    body = {"password": password, "tags": "administrator"}
    try:
        httpx.put(f"{API}/users/{user}", json=body, auth=GUEST, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"RabbitMQ management API: {exc} (scripts/services.sh enables it)")
    rights = {"configure": ".*", "write": ".*", "read": ".*"}
    httpx.put(f"{API}/permissions/%2F/{user}", json=rights, auth=GUEST, timeout=10)
    yield user, password
    httpx.delete(f"{API}/users/{user}", auth=GUEST, timeout=10)


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo,
    service_account: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    user, password = service_account
    with local_stack(
        mongo_server.url,
        tmp_path_factory.mktemp("stack"),
        FLAME_RABBIT_URL=f"amqp://{user}:{password}@127.0.0.1:5672/",
        FLAME_RABBIT_ADMIN_URL=f"http://{user}:{password}@127.0.0.1:15672/",
        FLAME_JOB_BROKERS=json.dumps([{"sort": "rabbitmq", "host": "amqp://127.0.0.1:5672/"}]),
        **WARM_ML,
    ) as s:
        yield s


def flamectl(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "flamectl"), *args]
    return subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=60)


def job_user(stack: LocalStack, job_id: str) -> str:
    return f"{stack.namespace}.job.{job_id}"


async def user_gone(user: str, timeout: float = 15) -> None:
    async with httpx.AsyncClient(auth=GUEST, timeout=10) as http:
        for _ in range(int(timeout * 5)):
            if (await http.get(f"{API}/users/{user}")).status_code == 404:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"broker user {user} still exists {timeout:g} s after its job ended")


async def test_role_code_reaches_nothing_but_its_own_data_plane(
    stack: LocalStack, service_account: tuple[str, str], rabbit_url: str, tmp_path: Path
) -> None:
    import hashlib

    victim = exchange_name(uuid.uuid4().hex[:24])  # another job's data exchange, in use
    params = {
        "namespace": stack.namespace,
        "password_sha256": hashlib.sha256(service_account[1].encode()).hexdigest(),
        "victim_exchange": victim,
    }
    script = tmp_path / "attack.py"
    source = (ROLES / "attack" / "main.py").read_text()
    script.write_text(source.replace("PARAMS: dict[str, str] = {}", f"PARAMS = {params!r}"))
    admin = await aio_pika.connect(rabbit_url)
    async with admin, stack.client() as client:
        channel = await admin.channel()
        exchange = await channel.declare_exchange(victim, aio_pika.ExchangeType.TOPIC)
        watch = await channel.declare_queue(exclusive=True)
        await watch.bind(exchange, "#")
        roles = {"trainer": script, "aggregator": ROLES / "ok" / "main.py"}
        job_id = await localstack.create_job(client, EXAMPLES / "mnist", roles)
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 90)
        assert status.state.value == "completed", status.reason
        for task in await client.tasks.list(job_id):  # what users read: no credentials
            hosts = [b.host for b in (await client.tasks.config(job_id, task.task_id)).brokers]
            assert hosts == ["amqp://127.0.0.1:5672/"]
        await channel.exchange_delete(victim)

    (found,) = (stack.home / "work" / job_id).rglob("attack.json")
    report = json.loads(found.read_text())
    assert report["login_user"] == job_user(stack, job_id)  # it was served its job's login
    assert (
        {"FLAME_JOB_ID", "FLAME_TASK_ID", "FLAME_METRICS_FILE"}
        <= set(report["flame_env"])
        <= {"FLAME_JOB_ID", "FLAME_TASK_ID", "FLAME_METRICS_FILE", "FLAME_DATA_ROOTS"}
    )
    assert report["broker"] == {"publish_event": "refused", "read_other_job": "refused"}
    leaks = set(report["leaks"])
    if report["euid"] == 0:  # root reads every process (CAP_SYS_PTRACE): see the same-uid test
        leaks.discard("parent environ")
    else:
        assert report["parent_environ"] == "denied"
    assert leaks == set(), f"the service password is readable from {sorted(leaks)}"
    assert report["python_leaks"] == [], "the service password is reachable from Python"
    await user_gone(job_user(stack, job_id))


async def test_two_tier_training_runs_on_the_job_user_which_is_gone_after(
    stack: LocalStack,
) -> None:
    async with stack.client() as client:
        job_id = await create_two_tier_job(client, rounds=2)
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 240)
        tasks = await client.tasks.list(job_id)
        assert status.state.value == "completed", [(t.role, t.log[-300:]) for t in tasks]
        assert len(tasks) == 5 and {t.state.value for t in tasks} == {"completed"}
    await user_gone(job_user(stack, job_id))
    # What the aggregator computed (its JSON lines) reached the job's log, round by round.
    aggregator = next(t for t in tasks if t.role == "aggregator")
    log = stack.home / "work" / job_id / aggregator.task_id / "task.log"
    printed = {
        row["evaluation"]: row["accuracy"]
        for row in map(json.loads, (x for x in log.read_text().splitlines() if x.startswith("{")))
        if row.get("evaluation", 0) > 0
    }
    shown = flamectl(stack, "--user", "alice", "get", "metrics", job_id, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    top = [r for r in rows if r["role"] == "aggregator"]
    reported = {r["round"]: r["metrics"]["test_accuracy"] for r in top}
    assert printed == reported and sorted(reported) == [1, 2]
    trainers = {r["taskId"] for r in rows if r["role"] == "trainer"}
    assert len(trainers) == 4  # every trainer reported its rounds (runtimes, bytes moved)
    assert all(r["metrics"]["train.runtime"] > 0 for r in rows if r["role"] == "trainer")


async def create_two_tier_job(client: FlameClient, rounds: int) -> str:
    """examples/two_tier_fedavg as the quickstart registers it, over RabbitMQ, fewer rounds."""
    return await localstack.create_example_job(
        client,
        TWO_TIER,
        hyperparameters={"rounds": rounds, "epochs": 1},
        backend="rabbitmq",
        max_run_time=200,
    )


HIDDEN_PARENT = """
import ctypes, os, subprocess, sys
from flame_common.processes import hide_from_peers
if os.geteuid() == 0:  # root reads any process: both run as nobody (a uid change resets
    os.setgroups([])   # the dumpable flag, so the visible case sets it back)
    os.setgid(65534)
    os.setuid(65534)
if sys.argv[1] == "hide":
    hide_from_peers()
else:
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1, as any fresh process
result = subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True, env={})
print(result.returncode, result.stderr.decode())
"""


@pytest.mark.parametrize(("mode", "readable"), [("hide", False), ("show", True)])
def test_a_hidden_process_environ_is_unreadable_to_its_same_uid_child(
    mode: str, readable: bool
) -> None:
    """What flamelets and the zygote do (`hide_from_peers`), checked as an unprivileged uid."""
    env = {"PATH": os.environ.get("PATH", ""), "SECRET": "s3cret"}
    command = [sys.executable, "-c", HIDDEN_PARENT, mode]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    code, _, error = result.stdout.partition(" ")
    assert (code == "0") is readable, error
    if not readable:
        assert "Permission denied" in error
