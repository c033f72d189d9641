"""End to end: what role code prints reaches `flamectl logs` and the client, live and whole."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_common.embedded import EmbeddedMongo
from flame_sdk.client import TaskLog
from tests.agents.stack import EXAMPLES, LocalStack, create_job, local_stack, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LINES = [f"line {i}" for i in range(16)]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with local_stack(mongo_server.url, tmp_path_factory.mktemp("logs")) as s:
        yield s


def _env(stack: LocalStack) -> dict[str, str]:
    """flamectl as alice (the stack's admin token acts for her)."""
    return {**stack.env, "FLAME_USER": "alice"}


async def test_output_is_shown_while_the_task_runs_and_whole_at_the_end(
    stack: LocalStack,
) -> None:
    async with stack.client() as client:
        job_id = await create_job(
            client, EXAMPLES / "mnist", {"trainer": "chatty", "aggregator": "chatty"}
        )
        await client.jobs.start(job_id)
        # `flamectl logs -f` of the aggregator, as a user types it: ends with the task
        command = [str(BIN / "flamectl"), "logs", job_id, "aggregator", "-f"]
        cli = subprocess.Popen(command, env=_env(stack), stdout=subprocess.PIPE, text=True)

        parts: list[TaskLog] = []
        running_at_first = ""
        async for part in client.jobs.follow_logs(job_id, "trainer/0"):
            if not parts:  # the first output arrives while the role still prints
                running_at_first = (await client.tasks.get(job_id, part.task_id)).state.value
            parts.append(part)
        assert running_at_first == "running"
        assert len([p for p in parts if p.data]) >= 2, parts  # more than one shipment
        assert parts[-1].ended
        whole = b"".join(p.data for p in parts).decode()
        assert whole.splitlines() == [*LINES, "done"]

        status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 90)
        assert status.state.value == "completed", status.reason
        every = await client.jobs.logs(job_id)
        assert len(every) >= 2
        for part in every:
            assert part.ended and part.data.decode().splitlines() == [*LINES, "done"], part.label

    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 0
    assert out.splitlines() == [*LINES, "done"]
    listed = subprocess.run(
        [str(BIN / "flamectl"), "logs", job_id, "--tail", "1"],
        env=_env(stack),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    assert "aggregator/0 | done" in listed.stdout and "trainer/0    | done" in listed.stdout
