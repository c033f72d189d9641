"""Distributed training: the ring averages exactly; members that fail or go silent never hang it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.channels import ChannelManager
from flame_sdk.config import Config
from flame_sdk.registries import create_registry
from flame_sdk.roles.distributed import DistributedTrainer
from flame_sdk.roles.ring import DIGEST, KIND, MEMBER, SYNCED, agree, split_chunks, view_digest
from flame_sdk.simulation import asimulate, run_roles
from flame_sdk.simulation.expand import JobOverrides, expand
from flame_sdk.simulation.processes import ProcessJob, TaskProcess
from flame_sdk.wire import Key
from tests.sdk.helpers import task_config
from tests.support.wait import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RING_CHANNEL = {
    "name": "ring-channel",
    "pair": ["trainer", "trainer"],
    "groupBy": {"type": "tag", "value": ["default"]},
    "funcTags": {"trainer": ["ring_allreduce"]},
}


def ring_config(
    task_id: str, job_id: str, registry: dict[str, str] | None = None, **hyperparameters: Any
) -> Config:
    return Config.load(
        task_config(
            "trainer",
            task_id,
            job_id,
            channels=[RING_CHANNEL],
            groupAssociation={"ring-channel": "default"},
            hyperparameters={"rounds": 2, **hyperparameters},
            registry=registry or {"sort": "dummy", "uri": ""},
        )
    )


class ArrayTrainer(DistributedTrainer):
    """'Trains' by setting its model to its own arrays plus the round number; `block_round`
    makes `train` wait until released."""

    def __init__(self, config: Config, index: int, size: int, block_round: int = 0) -> None:
        super().__init__(config)
        rng = np.random.default_rng(index)
        self.own = {
            "dense": rng.standard_normal((3, 4)).astype(np.float32),
            "bias": rng.standard_normal(5),  # float64
            "steps": rng.integers(0, 1000, size=6),  # int64: averaged, then rounded
            "scale": np.asarray(rng.standard_normal(), dtype=np.float32),  # 0-d
        }
        self.index, self.size = index, size
        self.block_round = block_round
        self.blocked, self.release = threading.Event(), threading.Event()
        self.started_from: dict[int, dict[str, np.ndarray]] = {}

    def initialize(self) -> None:
        self.model = {name: np.full_like(value, self.index) for name, value in self.own.items()}

    def load_data(self) -> None:
        self.dataset_size = self.size

    def train(self) -> None:
        if self.round == self.block_round:
            self.blocked.set()
            self.release.wait(30)
        self.started_from[self.round] = {k: v.copy() for k, v in self.model.items()}
        for name, value in self.own.items():
            self.model[name] = (value + self.round).astype(value.dtype)

    def evaluate(self) -> None:
        """Nothing to evaluate."""


def weighted_mean(trainers: list[ArrayTrainer], round_: int) -> dict[str, np.ndarray]:
    sizes = np.array([t.size for t in trainers], dtype=np.float64)
    out = {}
    for name in trainers[0].own:
        stacked = np.stack([t.own[name].astype(np.float64) + round_ for t in trainers])
        out[name] = np.tensordot(sizes, stacked, axes=1) / sizes.sum()
    return out


def assert_holds(trainer: ArrayTrainer, expected: dict[str, np.ndarray]) -> None:
    for name, value in expected.items():
        got = trainer.model[name]
        assert got.dtype == trainer.own[name].dtype
        if np.issubdtype(got.dtype, np.floating):
            np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, np.rint(value))


def test_chunks_are_contiguous_whole_arrays_balanced_by_bytes() -> None:
    weights = {f"w{i}": np.zeros(n, dtype=np.float32) for i, n in enumerate([10, 10, 40, 10, 10])}
    chunks = split_chunks(weights, 3)
    assert [name for chunk in chunks for name in chunk] == list(weights)
    assert chunks == [["w0", "w1"], ["w2"], ["w3", "w4"]]
    assert split_chunks(weights, 8).count([]) == 3  # fewer arrays than members: empty chunks


@pytest.mark.parametrize(("n", "sizes"), [(2, [7, 30]), (3, [5, 50, 11]), (5, [1, 9, 4, 30, 2])])
async def test_ring_gives_every_member_the_size_weighted_mean(n: int, sizes: list[int]) -> None:
    job = uuid.uuid4().hex
    trainers = [
        ArrayTrainer(ring_config(f"t{i}", job, minEnds={"trainer": n - 1}), i, sizes[i])
        for i in range(n)
    ]
    await run_roles(list(trainers), timeout=30)
    for trainer in trainers:
        assert_holds(trainer, weighted_mean(trainers, 2))
        assert [h["ring_members"] for h in trainer.metrics_history] == [n, n]
        assert [h["examples"] for h in trainer.metrics_history] == [sum(sizes)] * 2
        # round 2 started from round 1's mean
        round_one = weighted_mean(trainers, 1)
        np.testing.assert_allclose(trainer.started_from[2]["bias"], round_one["bias"])
    # round 1 started from the committer's (smallest id) model, for everyone
    assert [t.committer for t in trainers] == [True] + [False] * (n - 1)
    for trainer in trainers:
        np.testing.assert_array_equal(trainer.started_from[1]["steps"], np.zeros(6))


async def test_only_the_committer_saves_params_and_the_model(tmp_path: Path) -> None:
    job = uuid.uuid4().hex
    registry = {"sort": "local", "uri": str(tmp_path)}
    trainers = [
        ArrayTrainer(ring_config(f"t{i}", job, registry, minEnds={"trainer": 1}), i, 10 + i)
        for i in range(2)
    ]
    await run_roles(list(trainers), timeout=30)
    saved = create_registry("local", str(tmp_path), job, "test", "t0", "trainer").load_model(
        f"test-{job}"
    )
    assert saved is not None
    for name, value in trainers[1].model.items():
        np.testing.assert_array_equal(saved[name], value)
    assert (tmp_path / job / "t0" / "params").is_dir()
    assert not (tmp_path / job / "t1" / "params").exists()
    assert not (tmp_path / job / "t1" / "models").exists()
    assert (tmp_path / job / "t1" / "metrics.jsonl").read_text().count("\n") == 2


def test_agreement_needs_every_member_to_answer_with_the_same_member_set() -> None:
    view = ["a", "b", "c"]

    def answer(members: list[str], round_: int, synced: bool) -> dict[str, Any]:
        return {Key.ROUND: round_, DIGEST: view_digest(members), SYNCED: synced}

    answers = {"a": answer(view, 4, False), "c": answer(view, 7, True)}
    agreement, _ = agree("b", view, 6, True, answers)
    assert agreement is not None
    assert (agreement.round, agreement.committer, agreement.unsynced) == (7, "b", ["a"])
    agreement, reason = agree("b", view, 6, True, {**answers, "c": answer(["b", "c"], 7, True)})
    assert agreement is None and reason == "c sees other members"
    agreement, reason = agree("b", view, 6, True, {**answers, "c": None})
    assert agreement is None and reason == "no member message from c"


async def test_late_joiner_gets_the_model_catches_up_and_joins_the_ring() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 4, "minEnds": {"trainer": 1}}
    early = [ArrayTrainer(ring_config(f"t{i}", job, **hp), i, 10 * (i + 1)) for i in (1, 2)]
    late_hp = {**hp, "minEnds": {"trainer": 2}}
    late = ArrayTrainer(ring_config("t0", job, **late_hp), 0, 5)  # smallest id, but a newcomer
    early[1].block_round = 3
    tasks = [asyncio.create_task(t.arun()) for t in early]

    try:
        await asyncio.wait_for(asyncio.to_thread(early[1].blocked.wait, 20), 25)
        tasks.append(asyncio.create_task(late.arun()))
        await eventually(
            lambda: all(t.mailbox.channel.has("t0") for t in early),
            timeout=10,
            what="the newcomer t0 seen by every early member",
        )
        early[1].release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        early[1].release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert min(late.started_from) == 4  # it caught up with the others' round
    # it started from the ring's model of round 3, handed out by the committer (not itself)
    np.testing.assert_allclose(
        late.started_from[4]["dense"], weighted_mean(early, 3)["dense"], rtol=1e-6
    )
    assert early[0].committer and not late.committer
    for trainer in [*early, late]:
        assert_holds(trainer, weighted_mean([*early, late], 4))
    assert [h["ring_members"] for h in early[0].metrics_history] == [2, 2, 2, 3]


async def test_member_that_dies_before_the_all_reduce_makes_the_round_local() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 3, "minEnds": {"trainer": 2}}
    survivors = [ArrayTrainer(ring_config(f"t{i}", job, **hp), i, 10 + i) for i in (0, 1)]
    victim = ArrayTrainer(ring_config("t2", job, **hp), 2, 40, block_round=2)
    tasks = [asyncio.create_task(t.arun()) for t in (*survivors, victim)]
    try:
        await asyncio.wait_for(asyncio.to_thread(victim.blocked.wait, 20), 25)
        await victim.cm.backends[0].kill()  # crash: peers learn of it through liveness only
        tasks[2].cancel()
        await asyncio.wait_for(asyncio.gather(*tasks[:2]), 30)
    finally:
        victim.release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for trainer in survivors:
        assert [h["ring_members"] for h in trainer.metrics_history] == [3, 1, 2]
        assert_holds(trainer, weighted_mean(survivors, 3))
        # round 2 stayed local: round 3 started from the trainer's own round-2 model
        np.testing.assert_array_equal(trainer.started_from[3]["bias"], trainer.own["bias"] + 2)


async def test_silent_member_times_out_into_local_rounds() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 2, "minEnds": {"trainer": 2}, "ringTimeout": 0.3}
    trainers = [ArrayTrainer(ring_config(f"t{i}", job, **hp), i, 10) for i in range(2)]
    silent = ChannelManager(ring_config("t9", job))  # joins the ring channel, never answers
    await silent.join_all()
    try:
        await asyncio.wait_for(run_roles(list(trainers)), 10)
    finally:
        await silent.close()
    for trainer in trainers:
        assert [h["ring_members"] for h in trainer.metrics_history] == [1, 1]
        assert_holds(trainer, {k: v + 2 for k, v in trainer.own.items()})


async def test_member_set_mismatch_makes_rounds_local_at_once() -> None:
    job = uuid.uuid4().hex
    hp = {"rounds": 2, "minEnds": {"trainer": 2}}  # default ringTimeout: a wait would hang
    trainers = [ArrayTrainer(ring_config(f"t{i}", job, **hp), i, 10) for i in range(2)]
    confused = ChannelManager(ring_config("t9", job))
    await confused.join_all()
    channel = confused.get("ring-channel")

    async def answer_with_another_member_set() -> None:
        while True:
            got = await channel.recv_any(channel.all_ends())
            if got is None or got[1] is None or got[1][KIND] != MEMBER:
                await asyncio.sleep(0.01)
                continue
            bogus = {KIND: MEMBER, Key.ROUND: got[1][Key.ROUND], SYNCED: True}
            await channel.broadcast({**bogus, DIGEST: view_digest(["t9"])})

    responder = asyncio.create_task(answer_with_another_member_set())
    try:
        await asyncio.wait_for(run_roles(list(trainers)), 10)
    finally:
        responder.cancel()
        await asyncio.gather(responder, return_exceptions=True)
        await confused.close()
    for trainer in trainers:
        assert [h["ring_members"] for h in trainer.metrics_history] == [1, 1]
        assert_holds(trainer, {k: v + 2 for k, v in trainer.own.items()})


async def test_distributed_digits_example_learns_and_members_end_identical() -> None:
    result = await asimulate(EXAMPLES / "distributed", rounds=10, timeout=120)
    trainers = result.by_role("trainer")
    assert len(trainers) == 3
    accuracies = [h["test_accuracy"] for h in trainers[0].metrics_history]
    assert max(accuracies) >= 0.90, accuracies
    final = trainers[0].get_weights()
    for trainer in trainers:
        assert [h["ring_members"] for h in trainer.metrics_history] == [3] * 10
        assert [h["test_accuracy"] for h in trainer.metrics_history] == accuracies
        for name, value in trainer.get_weights().items():
            np.testing.assert_array_equal(value, final[name])
    assert sum(t.committer for t in trainers) == 1  # type: ignore[attr-defined]


CONSOLE_END = re.compile(r"end of training reached .*\bdigest=([0-9a-f]{16})")


def _final_digests(task: TaskProcess) -> list[str]:
    out = []
    for line in task.output().splitlines():
        record: dict[str, Any] = {}
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
        if record.get("event") == "end of training reached":
            out.append(str(record.get("digest")))
        elif match := CONSOLE_END.search(line):
            out.append(match[1])
    return out


@pytest.mark.integration
@pytest.mark.e2e
async def test_distributed_example_over_rabbitmq_one_process_per_trainer(
    rabbit_url: str, tmp_path: Path
) -> None:
    overrides = JobOverrides(
        job_id=f"e2e-{uuid.uuid4().hex[:8]}",
        backend="rabbitmq",
        brokers=[{"sort": "rabbitmq", "host": rabbit_url}],
        hyperparameters={"rounds": 2},
    )
    example = EXAMPLES / "distributed"
    job = ProcessJob(example, expand(example, overrides), tmp_path)
    await job.start()
    codes = await job.wait(timeout=150)
    failed = {t.task_id: t.output()[-2000:] for t in job.tasks if codes[t.task_id] != 0}
    assert not failed, failed
    digests = [_final_digests(t) for t in job.tasks]
    assert len(digests) == 3 and all(len(d) == 1 for d in digests), digests
    assert len({d[0] for d in digests}) == 1, digests  # one final model everywhere
