"""Partition ownership without a broker: gains replay first, probes make partitions direct, and a
second controller writing a job it holds a stale state of is refused, then catches up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_common.topology import topology
from flame_controller.partitions import Partitions
from flame_controller.ports import SeqTaken
from flame_controller.service import Controller
from schemas import commands as c
from schemas.job import JobSpec
from schemas.states import JobState
from tests.controller.conftest import memory_catalog, mnist
from tests.controller.harness import InProcess, event


def _partitions(replayed: list[frozenset[int]], forgotten: list[str]) -> Partitions:
    async def on_gain(new: frozenset[int]) -> None:
        replayed.append(new)

    def forget(drop: object) -> None:
        forgotten.extend(j for j in ("job-a", "job-b") if drop(j))  # type: ignore[operator]

    return Partitions(topology(FlameSettings(namespace="ns")), on_gain=on_gain, forget=forget)


class Channel:
    """Records the probes sent: queue name -> probe id."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}

    async def basic_publish(
        self, body: bytes, *, routing_key: str, properties: Any, **_: Any
    ) -> None:
        self.sent[routing_key] = properties.message_id


async def test_a_gain_replays_once_and_a_returning_probe_of_ours_makes_it_direct() -> None:
    replayed: list[frozenset[int]] = []
    p = _partitions(replayed, [])
    job = next(f"job-{n}" for n in range(100) if p.of(f"job-{n}") == 3)
    channel = Channel()
    await p.probe(channel)  # type: ignore[arg-type]
    first = channel.sent[p.queue(3)]
    assert len(channel.sent) == p.count  # nothing is direct yet: every partition is probed
    await p.gain([3])
    await p.gain([3])
    assert replayed == [frozenset({3})] and p.owns(job) and not p.direct(job)
    p.probed(3, "someone-else.1")  # another controller's probe says nothing about our forwards
    assert not p.direct(job)
    p.forwarding(3)  # after the first probe went out: that probe may overtake the forward
    p.probed(3, first)
    assert not p.direct(job)
    await p.probe(channel)  # type: ignore[arg-type]
    p.probed(3, channel.sent[p.queue(3)])  # sent after the forward, so behind it
    assert p.direct(job)
    channel.sent.clear()
    await p.probe(channel)  # type: ignore[arg-type]
    assert p.queue(3) not in channel.sent  # direct partitions are not probed
    p.forwarding(3)  # a forward (e.g. after a failed replay) makes it indirect again
    assert not p.direct(job)


async def test_losing_the_channel_or_handing_over_forgets_the_jobs() -> None:
    forgotten: list[str] = []
    p = _partitions([], forgotten)
    await p.gain(range(p.count))
    p.release(p.of("job-a"))
    assert forgotten == ["job-a"] and not p.owns("job-a")
    forgotten.clear()
    p.lose_all()
    assert forgotten == ["job-a", "job-b"] and p.owned == frozenset()


async def test_a_failed_replay_leaves_the_partition_unowned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def on_gain(new: frozenset[int]) -> None:
        raise ConnectionError("store away")

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr("flame_controller.partitions.asyncio.sleep", no_wait)
    p = Partitions(topology(FlameSettings()), on_gain=on_gain, forget=lambda _: None)
    await p.gain([1])
    assert p.owned == frozenset()


async def test_a_stale_second_writer_is_refused_and_catches_up_from_the_log(
    tmp_path: Path,
) -> None:
    settings = FlameSettings(home=tmp_path, namespace="memory", log_json=False)
    first = InProcess(settings, memory_catalog(mnist()))
    spec = JobSpec.model_validate(mnist().spec)
    job_id = str((await first.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()["id"])
    task = (await first.records.tasks(job_id))[0].task_id
    # A second controller on the same store reads the job, then the first one moves it on.
    second = Controller(settings, first.store, first.catalog, lambda _: None)
    await second.observe(job_id, [])  # caches the job as it is now
    (await first.call(c.StartJob(user_id="alice", job_id=job_id))).unwrap()
    log = [x.event.id for x in await first.records.log(job_id)]

    with pytest.raises(SeqTaken):  # its stale state (ready) takes the start again
        await second.execute(c.StartJob(user_id="alice", job_id=job_id))
    assert [x.event.id for x in await first.records.log(job_id)] == log  # nothing stored
    report = event("task.status_changed", {"state": JobState.RUNNING}, job_id=job_id, task_id=task)
    await second.observe(job_id, [report])  # replayed from the log, then written
    entries = await first.records.log(job_id)
    assert [x.event.seq for x in entries] == list(range(1, len(entries) + 1))
    assert [x.event.id for x in entries[: len(log)]] == log
    assert report.id in {x.event.id for x in entries[len(log) :]}
