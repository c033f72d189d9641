"""One OS process per role over real brokers: the same job gives the same model as in-process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flame_sdk.simulation import asimulate
from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.processes import ProcessJob

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def _run_processes(example: str, backend: str, broker: str, workdir: Path) -> list[float]:
    overrides = JobOverrides(
        job_id=f"e2e-{uuid.uuid4().hex[:8]}",
        backend=backend,
        brokers=[{"sort": backend, "host": broker}],
        hyperparameters={"rounds": 2},
    )
    job = ProcessJob(EXAMPLES / example, expand(EXAMPLES / example, overrides), workdir)
    await job.start()
    codes = await job.wait(timeout=240)
    failed = {t.role: t.output()[-2000:] for t in job.tasks if codes[t.task_id] != 0}
    assert not failed, failed
    top = next(t for t in job.tasks if t.role in ("aggregator", "top-aggregator"))
    lines = [json.loads(x) for x in top.output().splitlines() if x.startswith('{"evaluation"')]
    assert [x["evaluation"] for x in lines] == [0, 1, 2]
    return [x["accuracy"] for x in lines]


async def _in_process(example: str, role: str) -> list[float]:
    result = await asimulate(EXAMPLES / example, rounds=2, timeout=240)
    (agg,) = result.by_role(role)
    return [h["test_accuracy"] for h in agg.metrics_history]


async def test_two_tier_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes("two_tier_fedavg", "rabbitmq", rabbit_url, tmp_path)
    assert accuracies[1:] == await _in_process("two_tier_fedavg", "aggregator")


async def test_hierarchical_over_mqtt(mqtt_broker: tuple[str, int], tmp_path: Path) -> None:
    host, port = mqtt_broker
    accuracies = await _run_processes("hierarchical", "mqtt", f"{host}:{port}", tmp_path)
    assert accuracies[1:] == await _in_process("hierarchical", "top-aggregator")
