"""The Flame-style examples (two-tier, hierarchical, async, distributed) through the real stack:
`flame up`, flamelets, RabbitMQ; the four jobs run side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk import localstack
from flame_sdk.client import FlameClient
from tests.agents.stack import WARM_ML, LocalStack, local_stack, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flame_style"
# example -> (rounds, the role that evaluates, its task count, accuracy it reaches at least)
RUNS = {
    "syncfl": (3, "aggregator", 5, 0.5),
    "hier_syncfl": (3, "top-aggregator", 7, 0.5),
    "asyncfl": (8, "aggregator", 5, 0.4),
    "distributed": (3, "trainer", 3, 0.5),
}


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("flame-compat"), **WARM_ML) as s:
        yield s


async def _run(client: FlameClient, name: str) -> tuple[str, list[float]]:
    """Run one example to its end; its evaluating role's accuracies, round by round."""
    rounds, role, tasks, _ = RUNS[name]
    job_id = await localstack.create_example_job(
        client,
        EXAMPLES / name,
        hyperparameters={"rounds": rounds},
        backend="rabbitmq",
        max_run_time=300,
    )
    await client.jobs.start(job_id)
    status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 300)
    listed = await client.tasks.list(job_id)
    assert status.state.value == "completed", (name, [(t.role, t.log[-300:]) for t in listed])
    assert len(listed) == tasks and {t.state.value for t in listed} == {"completed"}, name
    rows = await client.jobs.metrics(job_id, role=role)
    first_task = min(r.task_id for r in rows)
    return name, [r.metrics["test-accuracy"] for r in rows if r.task_id == first_task]


async def test_flame_role_code_trains_through_the_stack_in_every_mode(stack: LocalStack) -> None:
    async with stack.client() as client:
        done = dict(await asyncio.gather(*(_run(client, name) for name in RUNS)))
    for name, accuracies in done.items():
        rounds, _, _, floor = RUNS[name]
        assert len(accuracies) == rounds, (name, accuracies)
        assert accuracies[-1] >= floor, (name, accuracies)  # training happened
    assert done["syncfl"][-1] > done["syncfl"][0], done["syncfl"]
