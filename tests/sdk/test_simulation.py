"""Whole jobs in one process over the local backend: the examples train for real, faults heal."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from flame_sdk.config import Config
from flame_sdk.simulation import asimulate
from flame_sdk.simulation.cli import main as flame_sim
from flame_sdk.simulation.expand import expand
from tests.sdk.helpers import task_config
from tests.sdk.roles import CountingTrainer, SumAggregator
from tests.support.wait import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _accuracies(role: object) -> list[float]:
    return [h["test_accuracy"] for h in role.metrics_history]  # type: ignore[attr-defined]


async def test_two_tier_fedavg_reaches_90_percent_and_trainers_get_final_model() -> None:
    result = await asimulate(EXAMPLES / "two_tier_fedavg", rounds=10, timeout=300)
    (agg,) = result.by_role("aggregator")
    trainers = result.by_role("trainer")
    assert len(trainers) == 4
    accuracies = _accuracies(agg)
    assert len(accuracies) == 10
    assert max(accuracies) >= 0.90, accuracies
    assert all(h["updates"] == 4 and h["examples"] == 1500 for h in agg.metrics_history)
    final = agg.get_weights()
    for trainer in trainers:  # EOT carried the final global model
        got = trainer.get_weights()
        for name, value in final.items():
            np.testing.assert_array_equal(got[name], value)


async def test_hierarchical_fedavg_equals_flat_fedavg() -> None:
    flat = await asimulate(EXAMPLES / "two_tier_fedavg", rounds=3, timeout=300)
    hier = await asimulate(EXAMPLES / "hierarchical", rounds=3, timeout=300)
    (top,) = hier.by_role("top-aggregator")
    (agg,) = flat.by_role("aggregator")
    assert len(hier.by_role("middle-aggregator")) == 2
    a, b = agg.get_weights(), top.get_weights()
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["0.weight"], 0)
    for trainer in hier.by_role("trainer"):
        np.testing.assert_array_equal(trainer.get_weights()["2.bias"], b["2.bias"])


async def test_fedbuff_converges() -> None:
    result = await asimulate(EXAMPLES / "async_fedbuff", rounds=20, timeout=300)
    (agg,) = result.by_role("aggregator")
    accuracies = _accuracies(agg)
    assert len(accuracies) == 20
    assert all(h["updates"] == 2 for h in agg.metrics_history)
    assert accuracies[-1] >= 0.75, accuracies


def _roles(
    job_id: str, n: int, rounds: int, min_ends: int
) -> tuple[SumAggregator, list[CountingTrainer]]:
    hp = {"rounds": rounds, "minEnds": {"aggregator": min_ends}}
    agg = SumAggregator(Config.load(task_config("aggregator", "agg", job_id, hyperparameters=hp)))
    trainers = [
        CountingTrainer(Config.load(task_config("trainer", f"t{i}", job_id, hyperparameters=hp)))
        for i in range(n)
    ]
    return agg, trainers


async def test_killed_trainer_does_not_hang_the_round() -> None:
    agg, _ = _roles(uuid.uuid4().hex, 0, rounds=3, min_ends=3)
    config = Config.load(
        task_config("trainer", "victim", agg.config.job.id, hyperparameters={"rounds": 3})
    )
    victim = CountingTrainer(config, block_round=2)
    healthy = _roles(agg.config.job.id, 2, 3, 3)[1]
    tasks = [asyncio.create_task(r.arun()) for r in (agg, victim, *healthy)]
    try:
        await asyncio.wait_for(asyncio.to_thread(victim.blocked.wait, 30), 35)
        await victim.cm.backends[0].kill()  # crash: no leave message, only liveness loss
        tasks[1].cancel()
        await asyncio.wait_for(asyncio.gather(tasks[0], *tasks[2:]), 60)
    finally:
        victim.release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [h["updates"] for h in agg.metrics_history] == [3, 2, 2]
    # w = sum of mean deltas (+1 per round): the dead trainer's missing update changes nothing
    assert agg.metrics_history[-1]["w"] == 3.0
    for trainer in healthy:
        np.testing.assert_array_equal(trainer.model["w"], agg.model["w"])


async def test_late_trainer_joins_the_next_round() -> None:
    agg, early = _roles(uuid.uuid4().hex, 2, rounds=4, min_ends=2)
    for trainer in early:
        trainer.delay = 0.2
    config = Config.load(
        task_config("trainer", "late", agg.config.job.id, hyperparameters={"rounds": 4})
    )
    late = CountingTrainer(config)
    tasks = [asyncio.create_task(r.arun()) for r in (agg, *early)]
    try:
        await eventually(lambda: agg.round >= 2, timeout=30, what="the aggregator in round 2")
        tasks.append(asyncio.create_task(late.arun()))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    updates = [h["updates"] for h in agg.metrics_history]
    assert updates[0] == 2 and updates[-1] == 3, updates
    assert late.rounds_trained and min(late.rounds_trained) >= 3
    np.testing.assert_array_equal(late.model["w"], agg.model["w"])


def test_flame_sim_command_runs_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flame_sim([str(EXAMPLES / "two_tier_fedavg"), "--rounds", "2", "--set", "epochs=1"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("[\n") :])
    assert summary[0]["role"] == "aggregator" and summary[0]["round"] == 2
    assert summary[0]["updates"] == 4


def test_flame_sim_rejects_a_directory_without_schema(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flame_sim([str(tmp_path)])
    assert exit_info.value.code == 2


async def test_registry_gets_metrics_per_round_and_the_final_model(tmp_path: Path) -> None:
    from flame_sdk.registries import create_registry

    job_id = f"reg-{uuid.uuid4().hex[:8]}"
    result = await asimulate(
        EXAMPLES / "two_tier_fedavg",
        rounds=2,
        job_id=job_id,
        registry={"sort": "local", "uri": str(tmp_path)},
        timeout=300,
    )
    (agg,) = result.by_role("aggregator")
    assert agg.registry is None  # the run was closed
    run_dir = tmp_path / job_id / agg.config.taskid
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1]
    assert all("test_accuracy" in x["metrics"] for x in lines)
    name = f"{agg.config.job.name}-{job_id}"
    assert name == f"two_tier_fedavg-{job_id}"
    registry = create_registry("local", str(tmp_path), job_id, "x", agg.config.taskid, "aggregator")
    saved = registry.load_model(name)
    assert saved is not None
    for key, value in agg.get_weights().items():
        np.testing.assert_array_equal(saved[key], value)
    trainer = result.by_role("trainer")[0]
    trainer_metrics = tmp_path / job_id / trainer.config.taskid / "metrics.jsonl"
    assert trainer_metrics.read_text().count("\n") == 2


def test_simulated_tasks_get_the_model_specs_privacy_and_datasampler(tmp_path: Path) -> None:
    example = tmp_path / "two_tier"
    shutil.copytree(EXAMPLES / "two_tier_fedavg", example)
    spec = json.loads((example / "modelSpec.json").read_text())
    spec["privacy"] = {"sort": "dp", "kwargs": {"clip_threshold": 1.0, "noise_factor": 0.0}}
    spec["datasampler"] = {"sort": "fedbalancer", "kwargs": {"w": 5}}
    (example / "modelSpec.json").write_text(json.dumps(spec))
    tasks = expand(example)
    assert tasks and all(t["privacy"] == spec["privacy"] for t in tasks)
    assert all(t["datasampler"] == spec["datasampler"] for t in tasks)


def test_flame_sim_refuses_an_unknown_optimizer_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = tmp_path / "two_tier"
    shutil.copytree(EXAMPLES / "two_tier_fedavg", example)
    spec = json.loads((example / "modelSpec.json").read_text())
    spec["optimizer"] = {"sort": "fedavgg"}
    (example / "modelSpec.json").write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as exit_info:
        flame_sim([str(example)])
    assert exit_info.value.code == 2
    assert "unknown optimizer sort 'fedavgg'" in capsys.readouterr().err
