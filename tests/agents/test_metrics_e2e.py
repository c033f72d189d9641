"""End to end: every service of a `flame up` stack serves its Prometheus metrics, and they move."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flame_common import metrics
from flame_common.embedded import EmbeddedMongo, free_port
from tests.agents.stack import (
    EXAMPLES,
    WARM_ML,
    LocalStack,
    create_job,
    local_stack,
    wait_state,
)
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICES = ("apiserver", "controller", "notifier", "deployer")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    ports = {service: str(free_port()) for service in ("controller", "notifier", "deployer")}
    with local_stack(
        mongo_server.url,
        tmp_path_factory.mktemp("metrics"),
        FLAME_METRICS_PORT_CONTROLLER=ports["controller"],
        FLAME_METRICS_PORT_NOTIFIER=ports["notifier"],
        FLAME_METRICS_PORT_DEPLOYER=ports["deployer"],
        FLAME_METRICS_POLL_SECONDS="0.5",
        **WARM_ML,
    ) as s:
        yield s


def url(stack: LocalStack, service: str) -> str:
    if service == "apiserver":
        return f"{stack.endpoint}/metrics"
    return f"http://127.0.0.1:{stack.env[f'FLAME_METRICS_PORT_{service.upper()}']}/metrics"


async def scrape(stack: LocalStack, service: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url(stack, service))
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


async def scrape_all(stack: LocalStack) -> dict[str, Samples]:
    return {s: await scrape(stack, s) for s in SERVICES}


async def test_every_service_serves_metrics_that_move_with_a_job(stack: LocalStack) -> None:
    await eventually(lambda: _answers(stack), timeout=30)
    before = await scrape_all(stack)
    assert "process_cpu_seconds_total" in names(before["apiserver"])
    for name in ("flame_outbox_backlog", "flame_outbox_publish_failures_total", "flame_jobs"):
        assert name in names(before["controller"]), name
    assert "flame_agents_live" in names(before["notifier"])
    assert {"flame_workers_started_total", "flame_workers_failed_total"} <= names(
        before["deployer"]
    )
    completed_before = total(before["controller"], "flame_jobs", state="completed")

    live: list[float] = []
    sampling = asyncio.Event()

    async def sample_agents() -> None:
        while not sampling.is_set():
            live.append(total(await scrape(stack, "notifier"), "flame_agents_live"))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_agents())
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "short", "aggregator": "short"}
        )
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 90)
        assert status.state.value == "completed", status.reason
        task_ids = [t.task_id for t in await client.tasks.list(job_id)]
    sampling.set()
    await sampler
    assert max(live) >= 1, live  # agents were live during the job
    await eventually(lambda: stack.workers() == [], timeout=15)

    async def counted() -> bool:
        samples = await scrape(stack, "controller")
        return total(samples, "flame_jobs", state="completed") >= completed_before + 1

    await eventually(counted, timeout=15)
    after = await scrape_all(stack)
    await eventually(lambda: _agents_gone(stack), timeout=15)  # the job ended: none watched

    consumed, published = "flame_events_consumed_total", "flame_events_published_total"
    for service in ("controller", "notifier", "deployer"):
        assert total(after[service], consumed, service=service) > total(
            before[service], consumed, service=service
        ), service
    for service in SERVICES:
        assert total(after[service], published, service=service) > total(
            before[service], published, service=service
        ), service
    controller = after["controller"]
    assert total(controller, consumed, type="task.status_changed") > 0
    assert total(controller, published, type="worker.requested") > 0
    assert total(after["deployer"], consumed, type="worker.requested") > 0
    assert total(after["notifier"], consumed, type="agent.registered") > 0
    assert total(after["deployer"], "flame_workers_started_total") >= total(
        before["deployer"], "flame_workers_started_total"
    ) + len(task_ids)
    assert total(controller, "flame_tasks", state="completed") >= len(task_ids)
    assert total(controller, "flame_command_seconds_count", kind="job.start", outcome="ok") >= 1
    rpc = total(after["apiserver"], "flame_rpc_seconds_count", kind="job.create", outcome="ok")
    assert rpc >= 1
    assert total(controller, "flame_outbox_backlog") >= 0

    # no label value names a job, a task or a user; every one comes from its closed set
    values = {v for samples in after.values() for _, labels in samples for _, v in labels}
    for secret in (job_id, *task_ids, "alice", stack.token):
        assert not any(secret in v for v in values), secret
    allowed = (
        metrics.EVENT_TYPES
        | metrics.SERVICES
        | metrics.COMMAND_KINDS
        | metrics.OUTCOMES
        | metrics.DEAD_LETTER_REASONS
        | set(metrics.STATES)
        | {metrics.OTHER}
    )
    odd = {
        (name, k, v)
        for samples in after.values()
        for name, labels in samples
        for k, v in labels
        if k != "le" and v not in allowed
    }
    assert not odd


async def _answers(stack: LocalStack) -> bool:
    try:
        await scrape_all(stack)
    except httpx.HTTPError:
        return False
    return True


async def _agents_gone(stack: LocalStack) -> bool:
    return total(await scrape(stack, "notifier"), "flame_agents_live") == 0
