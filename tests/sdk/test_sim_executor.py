"""Simulation determinism: call order kept, long calls side by side, folds in end order."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flame_sdk.config import Config
from flame_sdk.roles.waits import ROUND_TIMEOUT
from flame_sdk.simulation import SimulationResult, asimulate
from flame_sdk.simulation import executor as executor_module
from flame_sdk.simulation.executor import OrderedExecutor
from tests.sdk.helpers import run_beside_silent, task_config
from tests.sdk.roles import CountingTrainer, SumAggregator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOUND = 30.0


class Call:
    """A call of kind `kind` that sleeps `seconds` (releasing the GIL) and logs start and end."""

    def __init__(self, kind: str, seconds: float, log: list[str], value: Any = None) -> None:
        self.kind, self.seconds, self.log, self.value = kind, seconds, log, value

    def __call__(self) -> Any:
        self.log.append(f"start {self.value}")
        time.sleep(self.seconds)
        self.log.append(f"end {self.value}")
        return self.value


def _completion_order(futures: list[Future[Any]]) -> list[Any]:
    order: list[Any] = []
    lock = threading.Lock()
    done = threading.Event()

    def record(f: Future[Any]) -> None:
        with lock:
            order.append(f.result())
            if len(order) == len(futures):
                done.set()

    for f in futures:
        f.add_done_callback(record)
    assert done.wait(10)
    return order


def test_long_calls_overlap_yet_complete_in_submission_order() -> None:
    ex = OrderedExecutor(2, parallel_from=0.05)
    log: list[str] = []
    try:
        ex.submit(Call("train", 0.06, log, "calibrate")).result(5)  # measures the kind
        slow, quick = Call("train", 0.3, log, "slow"), Call("train", 0.06, log, "quick")
        futures = [ex.submit(slow), ex.submit(quick)]
        assert _completion_order(futures) == ["slow", "quick"]
    finally:
        ex.shutdown()
    assert ex.overlapped == 1
    assert log.index("end quick") < log.index("end slow")  # ran side by side, quick ended first
    assert log.index("start slow") < log.index("start quick")


@pytest.mark.parametrize(
    ("threads", "kinds"),
    [(1, ["train"] * 6), (2, ["eval"] * 6), (2, ["train", "eval", "train", "eval", "train"])],
    ids=["one-thread", "short-kind", "long-beside-short"],
)
def test_no_overlap_with_one_thread_or_a_short_call(threads: int, kinds: list[str]) -> None:
    ex = OrderedExecutor(threads, parallel_from=0.05)
    log: list[str] = []
    seconds = {"train": 0.06, "eval": 0.01}
    try:
        ex.submit(Call("train", 0.06, log, -2)).result(5)
        ex.submit(Call("eval", 0.01, log, -1)).result(5)
        futures = [ex.submit(Call(k, seconds[k], log, i)) for i, k in enumerate(kinds)]
        assert _completion_order(futures) == list(range(len(kinds)))
    finally:
        ex.shutdown()
    assert ex.overlapped == 0
    starts_and_ends = [int(e.split()[1]) for e in log]  # start i, end i, start i+1, ...
    assert starts_and_ends == [v for i in [-2, -1, *range(len(kinds))] for v in (i, i)]


def test_a_failing_call_raises_in_its_future_and_later_calls_still_run() -> None:
    def boom() -> None:
        raise ValueError("bad")

    ex = OrderedExecutor(2)
    try:
        failed = ex.submit(boom)
        later = ex.submit(lambda: 7)
        with pytest.raises(ValueError, match="bad"):
            failed.result(5)
        assert later.result(5) == 7
    finally:
        ex.shutdown()


def test_bad_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OrderedExecutor(0)


async def _run(
    monkeypatch: pytest.MonkeyPatch, threads: int, parallel_from: float, inline_below: float
) -> SimulationResult:
    monkeypatch.setattr(executor_module, "PARALLEL_FROM", parallel_from)
    monkeypatch.setattr(executor_module, "INLINE_BELOW", inline_below)
    return await asimulate(
        EXAMPLES / "two_tier_fedavg", rounds=3, job_id="same", user_threads=threads
    )


def _executor(result: SimulationResult) -> OrderedExecutor:
    executor = result.roles[0].composer.executor
    assert isinstance(executor, OrderedExecutor)
    return executor


async def test_simulation_results_do_not_depend_on_threads_or_timing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One thread with every call on it; two threads where every method counts as long after
    its first call (which runs alone): trainers train side by side, each with the one intra-op
    thread `initialize` asked for; every call after the first of its kind on the event loop.
    The aggregator folds in end order: the final weights and the accuracies are the same to
    the bit."""
    sequential = await _run(monkeypatch, 1, 1e9, 0.0)
    parallel = await _run(monkeypatch, 2, 1e-6, 0.0)
    inline = await _run(monkeypatch, 2, 1e9, 1e9)
    assert _executor(sequential).overlapped == 0 and _executor(sequential).inlined == 0
    assert _executor(parallel).overlapped > 0
    assert _executor(inline).inlined > 10
    (a,) = sequential.by_role("aggregator")
    for other in (parallel, inline):
        (b,) = other.by_role("aggregator")
        wa, wb = a.get_weights(), b.get_weights()
        assert set(wa) == set(wb)
        for name in wa:
            np.testing.assert_array_equal(wa[name], wb[name])
        assert [h["test_accuracy"] for h in a.metrics_history] == [
            h["test_accuracy"] for h in b.metrics_history
        ]


class Where:
    """A call of kind `kind` that records the thread it ran on."""

    def __init__(self, kind: str, seconds: float = 0.0) -> None:
        self.kind, self.seconds = kind, seconds
        self.thread: str | None = None

    def __call__(self) -> str:
        time.sleep(self.seconds)
        self.thread = threading.current_thread().name
        return self.kind


async def test_short_calls_run_on_the_loop_unless_a_call_is_in_flight() -> None:
    ex = OrderedExecutor(2, inline_below=0.05)
    loop_thread = threading.current_thread().name
    try:
        first, second = Where("short"), Where("short")
        assert await ex.arun(first) == "short"
        assert first.thread != loop_thread  # unknown kind: measured on a thread
        await ex.arun(second)
        assert second.thread == loop_thread and ex.inlined == 1
        await ex.arun(Where("long", 0.06))  # measured long
        slow, short = Where("long", 0.06), Where("short")
        task = asyncio.create_task(ex.arun(slow))
        await asyncio.sleep(0.01)  # `slow` is in flight on a thread
        await ex.arun(short)
        await task
        assert slow.thread != loop_thread and short.thread != loop_thread
        assert ex.inlined == 1
    finally:
        ex.shutdown()


def _two_tier(
    delays: dict[str, float], block: str = "", timeout: float | None = None
) -> tuple[SumAggregator, list[CountingTrainer], list[str]]:
    """An aggregator folding in end order (its folds recorded) and trainers `t0`, `t1`, ... that
    take `delays[id]` seconds to train (`block`: silent in round 1)."""
    job = uuid.uuid4().hex
    hp: dict[str, Any] = {"rounds": 1, "minEnds": {"aggregator": len(delays)}}
    if timeout is not None:
        hp[ROUND_TIMEOUT] = timeout
    agg = SumAggregator(Config.load(task_config("aggregator", "agg", job, hyperparameters=hp)))
    agg.fold_in_end_order = True
    folds: list[str] = []
    fold = agg.fold

    async def recorded(aggregation: Any, end: str, message: Any) -> Any:
        folds.append(end)
        return await fold(aggregation, end, message)

    agg.fold = recorded  # type: ignore[method-assign]
    trainers = []
    for task_id, delay in delays.items():
        config = Config.load(task_config("trainer", task_id, job, hyperparameters=hp))
        trainer = CountingTrainer(config, block_round=1 if task_id == block else 0)
        trainer.delay = delay
        trainers.append(trainer)
    return agg, trainers, folds


async def test_in_end_order_updates_that_arrive_early_wait_their_turn() -> None:
    agg, trainers, folds = _two_tier({"t0": 0.4, "t1": 0.2, "t2": 0.0})  # arrive t2, t1, t0
    await asyncio.wait_for(asyncio.gather(*(r.arun() for r in (agg, *trainers))), BOUND)
    assert folds == ["t0", "t1", "t2"]
    assert [h["updates"] for h in agg.metrics_history] == [3]


async def test_in_end_order_held_updates_are_folded_when_the_round_deadline_passes() -> None:
    agg, trainers, folds = _two_tier({"t0": 0.0, "t1": 0.2, "t2": 0.0}, block="t0", timeout=0.8)
    silent, *others = trainers
    await run_beside_silent([agg, *others], silent, BOUND)
    assert folds == ["t1", "t2"]  # t2 arrived first; both were held behind the silent t0
    assert [h["updates"] for h in agg.metrics_history] == [2]
