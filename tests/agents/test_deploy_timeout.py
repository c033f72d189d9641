"""A task placed on a compute nobody deploys to fails its job at the deploy timeout, naming the
compute, through the real stack (never a silent wait until maxRunTime)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk.localstack import code_zip
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.job import JobSpec, ModelSpec, RoleDatasetGroups
from tests.agents.helpers import ROLES
from tests.agents.stack import EXAMPLES, LocalStack, local_stack, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(
        mongo_server.url,
        tmp_path_factory.mktemp("stack"),
        FLAME_DEPLOY_TIMEOUT="4",
    ) as s:
        yield s


async def test_a_job_waiting_for_a_compute_without_deployer_fails_naming_it(
    stack: LocalStack,
) -> None:
    async with stack.client() as client:
        await client.computes.register("eu1", region="default/eu", api_key="k")  # no deployer
        design_id = f"wait-{uuid.uuid4().hex[:6]}"
        # the mnist design with its one group moved to 'eu' (datasets of realm default/eu)
        schema = (EXAMPLES / "mnist" / "schema.json").read_text().replace('"us"', '"eu"')
        await client.designs.create(design_id)
        await client.schemas.create(design_id, DesignSchema.model_validate_json(schema))
        ok = ROLES / "ok" / "main.py"
        await client.code.upload(design_id, code_zip({"trainer": ok, "aggregator": ok}))
        info = DatasetInfo(
            url=f"file:///data/{uuid.uuid4().hex}", data_format="npy", realm="default/eu",
            is_public=True,
        )  # fmt: skip
        groups = {"eu": [await client.datasets.create(info)]}
        spec = JobSpec(
            name="waits for eu1",
            design_id=design_id,
            backend="mqtt",
            max_run_time=600,
            data_spec=[RoleDatasetGroups(role="trainer", dataset_groups=groups)],
            model_spec=ModelSpec(),
        )
        job_id = (await client.jobs.create(spec)).id
        await client.jobs.start(job_id)
        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 60)
        assert status.state.value == "failed"
        assert status.reason.startswith("not deployed within 4 s: 1 task(s) on compute 'eu1'")
        states = {t.role: t.state.value for t in await client.tasks.list(job_id)}
        assert states == {"aggregator": "completed", "trainer": "terminated"}
