"""One OS process per role over real brokers: every example trains and ends with one final model."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path

import pytest

from flame_sdk.simulation import asimulate
from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.processes import ProcessJob, TaskProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOP_ROLES = ("aggregator", "top-aggregator")
# task logs hold JSON log lines or console ones (`... end of training sent  digest=… ...`)
CONSOLE_EOT = re.compile(r"end of training (sent|received) .*\bdigest=([0-9a-f]{16})")

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _digests(task: TaskProcess, kind: str) -> list[str]:
    """The model digests of the task's "end of training <kind>" log lines."""
    out = []
    for line in task.output().splitlines():
        record: dict[str, object] = {}
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
        if record.get("event") == f"end of training {kind}":
            out.append(str(record.get("digest")))
        elif (match := CONSOLE_EOT.search(line)) and match[1] == kind:
            out.append(match[2])
    return out


async def _run_processes(
    example: str, backend: str, broker: str, workdir: Path, rounds: int
) -> list[float]:
    """Run the job; check every process succeeded and every trainer got the top's final model.

    Returns the top aggregator's test accuracy per evaluation (0 = the initial model).
    """
    overrides = JobOverrides(
        job_id=f"e2e-{uuid.uuid4().hex[:8]}",
        backend=backend,
        brokers=[{"sort": backend, "host": broker}],
        hyperparameters={"rounds": rounds},
    )
    job = ProcessJob(EXAMPLES / example, expand(EXAMPLES / example, overrides), workdir)
    await job.start()
    codes = await job.wait(timeout=150)
    failed = {t.role: t.output()[-2000:] for t in job.tasks if codes[t.task_id] != 0}
    assert not failed, failed
    (top,) = [t for t in job.tasks if t.role in TOP_ROLES]
    (final,) = _digests(top, "sent")
    trainers = [t for t in job.tasks if t.role == "trainer"]
    assert len(trainers) == 4
    for trainer in trainers:
        assert _digests(trainer, "received") == [final], trainer.output()[-2000:]
    lines = [json.loads(x) for x in top.output().splitlines() if x.startswith('{"evaluation"')]
    assert [x["evaluation"] for x in lines] == list(range(rounds + 1))
    return [x["accuracy"] for x in lines]


async def _in_process(example: str, role: str, rounds: int) -> list[float]:
    result = await asimulate(EXAMPLES / example, rounds=rounds, timeout=120)
    (agg,) = result.by_role(role)
    return [h["test_accuracy"] for h in agg.metrics_history]


async def test_two_tier_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes("two_tier_fedavg", "rabbitmq", rabbit_url, tmp_path, 2)
    assert accuracies[1:] == await _in_process("two_tier_fedavg", "aggregator", 2)
    assert accuracies[-1] > accuracies[0] + 0.2


async def test_two_tier_over_mqtt(mqtt_broker: tuple[str, int], tmp_path: Path) -> None:
    host, port = mqtt_broker
    accuracies = await _run_processes("two_tier_fedavg", "mqtt", f"{host}:{port}", tmp_path, 2)
    assert accuracies[1:] == await _in_process("two_tier_fedavg", "aggregator", 2)
    assert accuracies[-1] > accuracies[0] + 0.2


async def test_hierarchical_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes("hierarchical", "rabbitmq", rabbit_url, tmp_path, 2)
    assert accuracies[1:] == await _in_process("hierarchical", "top-aggregator", 2)
    assert accuracies[-1] > accuracies[0] + 0.2


async def test_hybrid_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes("hybrid", "rabbitmq", rabbit_url, tmp_path, 2)
    assert accuracies[1:] == await _in_process("hybrid", "aggregator", 2)
    assert accuracies[-1] > accuracies[0] + 0.2


# Asynchronous runs are not reproducible (arrival order decides staleness). In one process,
# FedBuff is at 0.72-0.82 after 10 versions in 2 and 3 tiers alike, from about 0.1.
ASYNC_VERSIONS = 10
ASYNC_BAR = 0.55


async def test_fedbuff_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes(
        "async_fedbuff", "rabbitmq", rabbit_url, tmp_path, ASYNC_VERSIONS
    )
    assert accuracies[-1] >= ASYNC_BAR, accuracies


async def test_three_tier_fedbuff_over_rabbitmq(rabbit_url: str, tmp_path: Path) -> None:
    accuracies = await _run_processes(
        "async_hierarchical", "rabbitmq", rabbit_url, tmp_path, ASYNC_VERSIONS
    )
    assert accuracies[-1] >= ASYNC_BAR, accuracies
