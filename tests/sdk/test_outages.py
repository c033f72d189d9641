"""Whole jobs across faults on real brokers: a broker outage mid-round (a cuttable proxy in front
of RabbitMQ), an outage longer than the bound, and a middle aggregator killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from flame_sdk.backends.base import BrokerOutageError
from flame_sdk.roles import Role
from flame_sdk.roles.waits import EXIT_PEER_WAIT
from flame_sdk.simulation import asimulate
from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.processes import ProcessJob, TaskProcess
from flame_sdk.simulation.runner import build_roles, run_roles
from tests.sdk.backends.proxy import TcpProxy
from tests.support.wait import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROUNDS = 6
BOUND = 240.0  # every run here ends well within it, or the test fails instead of hanging

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(rabbit_url: str) -> AsyncIterator[TcpProxy]:
    url = urlsplit(rabbit_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5672).start()
    proxy.url = urlunsplit(  # type: ignore[attr-defined]
        url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{proxy.port}")
    )
    yield proxy
    await proxy.close()


def _proxied_roles(proxy: TcpProxy, **hyperparameters: object) -> list[Role]:
    overrides = JobOverrides(
        job_id=f"outage-{uuid.uuid4().hex[:8]}",
        backend="rabbitmq",
        brokers=[{"sort": "rabbitmq", "host": proxy.url}],  # type: ignore[attr-defined]
        hyperparameters={"rounds": ROUNDS, **hyperparameters},
    )
    return build_roles(EXAMPLES / "two_tier_fedavg", overrides)


def _accuracies(role: Role) -> list[float]:
    return [h["test_accuracy"] for h in role.metrics_history]


async def test_broker_outage_mid_round_the_run_completes_with_the_same_accuracy(
    proxy: TcpProxy,
) -> None:
    reference = await asimulate(EXAMPLES / "two_tier_fedavg", rounds=ROUNDS, timeout=BOUND)
    (expected,) = reference.by_role("aggregator")

    roles = _proxied_roles(proxy)
    (agg,) = [r for r in roles if r.config.role == "aggregator"]
    run = asyncio.create_task(run_roles(roles, BOUND))
    await eventually(lambda: agg.round >= 3 or run.done(), timeout=BOUND, what="round 3")
    assert not run.done()
    proxy.cut()  # in round 3: models out or updates coming back
    await asyncio.sleep(3.0)
    proxy.restore()
    await run

    assert len(agg.metrics_history) == ROUNDS
    assert all(h["updates"] == 4 for h in agg.metrics_history)  # no update lost
    assert _accuracies(agg)[-1] == pytest.approx(_accuracies(expected)[-1], abs=0.02)


async def test_broker_outage_longer_than_the_bound_fails_clearly(proxy: TcpProxy) -> None:
    roles = _proxied_roles(proxy, brokerOutageTimeout=2)
    (agg,) = [r for r in roles if r.config.role == "aggregator"]
    run = asyncio.create_task(run_roles(roles, BOUND))
    await eventually(lambda: agg.round >= 2 or run.done(), timeout=BOUND, what="round 2")
    assert not run.done()
    proxy.cut()  # for good
    with pytest.raises(BrokerOutageError, match=r"rabbitmq broker unreachable .* gives up"):
        await asyncio.wait_for(run, 60)


def _lines(output: str, event: str) -> list[str]:
    """The log lines (JSON or console) of `event`."""
    return [line for line in output.splitlines() if event in line]


ROUNDS = 40


@pytest.mark.e2e
async def test_killed_middle_aggregator_the_top_finishes_and_its_trainers_end(
    rabbit_url: str, tmp_path: Path
) -> None:
    """Process per role; one middle aggregator gets SIGKILL mid-run. The job still ends: the
    top finishes every round with the other group, the orphans exit with EXIT_PEER_WAIT."""
    example = EXAMPLES / "hierarchical"
    overrides = JobOverrides(
        job_id=f"e2e-{uuid.uuid4().hex[:8]}",
        backend="rabbitmq",
        brokers=[{"sort": "rabbitmq", "host": rabbit_url}],
        # enough rounds that the kill (after round 2) lands long before the end on a fast machine
        hyperparameters={"rounds": ROUNDS, "rejoinTimeout": 5, "logLevel": "INFO"},
    )
    configs = expand(example, overrides)
    job = ProcessJob(example, configs, tmp_path)
    await job.start()
    try:
        tasks = {t.task_id: t for t in job.tasks}
        (top,) = [t for t in job.tasks if t.role == "top-aggregator"]
        victim = next(t for t in job.tasks if t.role == "middle-aggregator")
        group = next(c for c in configs if c["taskid"] == victim.task_id)["groupAssociation"]
        orphans = {
            c["taskid"]
            for c in configs
            if c["role"] == "trainer" and set(c["groupAssociation"].values()) & set(group.values())
        }
        await eventually(
            lambda: _evaluated(top, 2), timeout=BOUND, interval=0.2, what="round 2 at the top"
        )
        os.kill(victim.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        codes = await job.wait(timeout=BOUND)
    finally:
        await job.kill()
    assert codes[victim.task_id] == -signal.SIGKILL
    assert codes[top.task_id] == 0, top.output()[-2000:]
    assert _evaluated(top, ROUNDS)  # every round, with the other group
    assert len(orphans) == 2
    for task_id, code in codes.items():
        if task_id in orphans:
            assert code == EXIT_PEER_WAIT, tasks[task_id].output()[-2000:]
            (ended,) = _lines(tasks[task_id].output(), "role ended: a wait for a peer ran out")
            assert "(rejoinTimeout)" in ended and victim.task_id in ended
        elif task_id != victim.task_id:
            assert code == 0, tasks[task_id].output()[-2000:]


def _evaluated(task: TaskProcess, rounds: int) -> bool:
    """Whether the top printed the evaluation after `rounds` rounds."""
    lines = [x for x in task.output().splitlines() if x.startswith('{"evaluation"')]
    return any(json.loads(x)["evaluation"] >= rounds for x in lines)
