"""Non-orchestration: a flamelet started by hand on an unmanaged compute joins its job."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from flame_common.embedded import EmbeddedMongo
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.job import JobSpec, ModelSpec, RoleDatasetGroups
from tests.agents.stack import (
    EXAMPLES,
    LocalStack,
    job_events,
    local_stack,
    wait_state,
)
from tests.support.zips import scripted_zip

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("stack")) as s:
        yield s


async def test_hand_started_flamelet_joins_a_job_on_an_unmanaged_compute(stack: LocalStack):
    edge, api_key = f"edge-{uuid.uuid4().hex[:6]}", "edge-secret"
    async with stack.client() as client:
        await client.computes.register(edge, region="default/edge", api_key=api_key, managed=False)
        design = f"hybrid-{uuid.uuid4().hex[:6]}"
        await client.designs.create(design)
        schema = DesignSchema.model_validate_json((EXAMPLES / "mnist" / "schema.json").read_text())
        await client.schemas.create(design, schema)
        await client.code.upload(design, scripted_zip({"trainer": "ok", "aggregator": "ok"}))
        dataset = await client.datasets.create(
            DatasetInfo(url="file:///edge/data.npz", data_format="npz", realm="default/edge")
        )
        spec = JobSpec(
            name="hand-started trainer",
            design_id=design,
            backend="mqtt",
            max_run_time=120,
            data_spec=[RoleDatasetGroups(role="trainer", dataset_groups={"us": [dataset]})],
            model_spec=ModelSpec(),
        )
        job_id = (await client.jobs.create(spec)).id
        tasks = {t.role: t for t in await client.tasks.list(job_id)}
        assert tasks["trainer"].compute_id == edge
        assert tasks["aggregator"].compute_id == "default"

        await client.jobs.start(job_id)
        # The deployer runs the aggregator only; the trainer waits for a hand-started agent.
        await wait_state(client, job_id, {"running"}, 60)
        requested = [e for e in await job_events(client, job_id) if e.type == "worker.requested"]
        assert {t for e in requested for t in e.payload.task_ids} == {tasks["aggregator"].task_id}
        assert all(e.payload.compute_id == "default" for e in requested)

        # The compute's admin reads the keys of its tasks and starts the agent by hand.
        deployment = await client.computes.deployment_config(edge, job_id, api_key=api_key)
        trainer_id = tasks["trainer"].task_id
        assert set(deployment.agent_kvs) == {trainer_id}
        key = deployment.agent_kvs[trainer_id]
        argv = ["--job", job_id, "--task", trainer_id, "--key", key, "--apiserver", stack.endpoint]
        agent = subprocess.Popen(
            [sys.executable, "-m", "flamelet.main", *argv],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 60)
            assert status.state.value == "completed", status.reason
            assert agent.wait(timeout=30) == 0
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        events = await job_events(client, job_id)
        mine = [e.type for e in events if e.task_id == trainer_id]
        assert "worker.created" not in mine
        chain = ["agent.registered", "task.assigned", "task.status_changed"]
        assert [t for t in mine if t in chain][:3] == chain
