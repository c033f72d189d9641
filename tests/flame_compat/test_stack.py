"""The Flame-style two-tier example through the real stack (`flame up`, flamelets, RabbitMQ)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk import localstack
from tests.agents.stack import WARM_ML, LocalStack, local_stack, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SYNCFL = Path(__file__).resolve().parents[2] / "examples" / "flame_style" / "syncfl"


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("flame-compat"), **WARM_ML) as s:
        yield s


async def test_flame_role_code_trains_through_the_stack(stack: LocalStack) -> None:
    async with stack.client() as client:
        job_id = await localstack.create_example_job(
            client,
            SYNCFL,
            hyperparameters={"rounds": 3},
            backend="rabbitmq",
            max_run_time=200,
        )
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 240)
        tasks = await client.tasks.list(job_id)
        assert status.state.value == "completed", [(t.role, t.log[-300:]) for t in tasks]
        assert len(tasks) == 5 and {t.state.value for t in tasks} == {"completed"}
        rows = await client.jobs.metrics(job_id, role="aggregator")
    accuracy = {r.round: r.metrics["test-accuracy"] for r in rows}
    assert sorted(accuracy) == [1, 2, 3]
    assert accuracy[3] > accuracy[1] and accuracy[3] >= 0.5, accuracy  # training happened
    assert all(r.metrics["updates"] == 4 for r in rows)
