"""Every wait for a peer is bounded: roles whose peer died go on without it or end with a reason."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from flame_sdk.config import Config, ConfigError
from flame_sdk.roles import PeerWaitError, Role
from flame_sdk.roles.waits import (
    DEFAULTS,
    JOIN_TIMEOUT,
    REJOIN_TIMEOUT,
    ROUND_TIMEOUT,
    wait_seconds,
)
from flame_sdk.simulation.expand import JobOverrides
from flame_sdk.simulation.runner import build_roles
from tests.sdk.helpers import run_beside_silent, task_config
from tests.sdk.roles import CountingTrainer, SumAggregator
from tests.support.wait import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOUND = 60.0  # no test here may take longer: a hang fails instead of blocking the suite


def test_wait_seconds_defaults_per_role_values_and_refusals() -> None:
    hp = {JOIN_TIMEOUT: {"trainer": 2.5}, ROUND_TIMEOUT: None}
    config = Config.load(task_config("trainer", "t", hyperparameters={"rounds": 1, **hp}))
    assert wait_seconds(config, JOIN_TIMEOUT) == 2.5
    assert wait_seconds(config, ROUND_TIMEOUT) == DEFAULTS[ROUND_TIMEOUT]
    for bad in (0, -1, "soon"):
        config = Config.load(task_config("trainer", "t", hyperparameters={JOIN_TIMEOUT: bad}))
        with pytest.raises(ConfigError, match="joinTimeout"):
            wait_seconds(config, JOIN_TIMEOUT)


async def test_trainer_without_aggregator_ends_naming_the_wait() -> None:
    hp = {"rounds": 2, JOIN_TIMEOUT: 0.5}
    trainer = CountingTrainer(Config.load(task_config("trainer", "t0", hyperparameters=hp)))
    with pytest.raises(PeerWaitError, match=r"no aggregator on channel 'param-channel' .*joinTim"):
        await asyncio.wait_for(trainer.arun(), BOUND)


async def test_trainer_of_a_silent_aggregator_ends_naming_it() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 2, "upstreamTimeout": 0.5}
    trainer = CountingTrainer(Config.load(task_config("trainer", "t0", job, hyperparameters=hp)))
    # present but never sends a model: it waits for more ends than will ever come
    mute = SumAggregator(
        Config.load(task_config("aggregator", "mute", job, hyperparameters={"minEnds": 5}))
    )
    mute_run = asyncio.create_task(mute.arun())
    try:
        with pytest.raises(PeerWaitError, match=r"aggregator mute .* sent nothing .*upstreamTim"):
            await asyncio.wait_for(trainer.arun(), BOUND)
    finally:
        mute_run.cancel()
        await asyncio.gather(mute_run, return_exceptions=True)


async def test_round_closes_without_an_end_that_is_alive_but_silent() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 2, "minEnds": {"aggregator": 2}, ROUND_TIMEOUT: 0.5}
    agg = SumAggregator(Config.load(task_config("aggregator", "agg", job, hyperparameters=hp)))
    healthy = CountingTrainer(Config.load(task_config("trainer", "t0", job, hyperparameters=hp)))
    silent = CountingTrainer(
        Config.load(task_config("trainer", "t1", job, hyperparameters=hp)), block_round=1
    )
    await run_beside_silent([agg, healthy], silent, BOUND)
    assert [h["updates"] for h in agg.metrics_history] == [1, 1]


def _group(role: Role, tag: str) -> str:
    """The group of the role's channel carrying `tag`."""
    return role.config.group_of(role.config.channel(role.config.func_tag_map()[tag]))


async def test_dead_middle_aggregator_top_finishes_and_its_trainers_end() -> None:
    """Hierarchical digits: one middle aggregator crashes after round 1. The top finishes every
    round with the other group; the orphaned trainers end with PeerWaitError within the bound."""
    overrides = JobOverrides(
        job_id=f"sim-{uuid.uuid4().hex[:8]}",
        backend="local",
        hyperparameters={"rounds": 4, REJOIN_TIMEOUT: 1.0, "epochs": 1},
    )
    roles = build_roles(EXAMPLES / "hierarchical", overrides)
    (top,) = [r for r in roles if r.config.role == "top-aggregator"]
    victim = next(r for r in roles if r.config.role == "middle-aggregator")
    group = _group(victim, "distribute")
    runs = {r.config.taskid: asyncio.create_task(r.arun()) for r in roles}

    def orphaned(role: Role) -> bool:
        return role.config.role == "trainer" and _group(role, "fetch") == group

    try:
        async with asyncio.timeout(BOUND):
            await eventually(lambda: top.round >= 2, timeout=BOUND, what="round 2 at the top")
            await victim.cm.backends[0].kill()  # type: ignore[attr-defined]
            runs[victim.config.taskid].cancel()
            others = [runs[r.config.taskid] for r in roles if r is not victim]
            results = await asyncio.gather(*others, return_exceptions=True)
    finally:
        for run in runs.values():
            run.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
    outcome = dict(zip([r for r in roles if r is not victim], results, strict=True))
    assert top.round > 4 and len(top.metrics_history) == 4  # every round, with the other group
    for role, result in outcome.items():
        if orphaned(role):
            assert isinstance(result, PeerWaitError), (role.config.taskid, result)
            assert f"({REJOIN_TIMEOUT})" in str(result) and victim.config.taskid in str(result)
        else:
            assert result is None, (role.config.taskid, result)
    assert sum(orphaned(r) for r in outcome) == 2
