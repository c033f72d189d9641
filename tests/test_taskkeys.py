"""The task-key cache the controller and the notifier share: one read per job, bounded."""

from __future__ import annotations

import asyncio

from flame_common.taskkeys import TaskKeys


class Reads:
    """A job store's keys, counting reads."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, str]] = {"j1": {"a": "ka", "b": "kb"}, "j2": {"c": "kc"}}
        self.reads: list[str] = []

    async def load(self, job_id: str) -> dict[str, str]:
        self.reads.append(job_id)
        return dict(self.jobs.get(job_id, {}))


def test_a_jobs_keys_are_read_once_for_all_its_tasks() -> None:
    async def go() -> None:
        reads = Reads()
        keys = TaskKeys(reads.load)
        assert await keys.key("j1", "a") == "ka"
        assert await keys.key("j1", "b") == "kb"
        assert await keys.of("j1", ["a", "b"]) == {"a": "ka", "b": "kb"}
        assert reads.reads == ["j1"]

    asyncio.run(go())


def test_a_task_not_among_the_cached_keys_reads_the_job_again() -> None:
    async def go() -> None:
        reads = Reads()
        keys = TaskKeys(reads.load)
        await keys.key("j1", "a")
        reads.jobs["j1"]["new"] = "knew"  # a task added by a job update
        assert await keys.key("j1", "new") == "knew"
        assert await keys.key("j1", "ghost") is None  # unknown: read again, still unknown
        assert reads.reads == ["j1", "j1", "j1"]

    asyncio.run(go())


def test_the_least_recently_used_job_goes_first_and_forget_drops_one() -> None:
    async def go() -> None:
        reads = Reads()
        keys = TaskKeys(reads.load, capacity=1)
        await keys.key("j1", "a")
        await keys.key("j2", "c")  # j1 evicted
        assert len(keys) == 1
        await keys.key("j1", "a")
        assert reads.reads == ["j1", "j2", "j1"]
        keys.forget("j1")
        assert len(keys) == 0
        await keys.key("j1", "b")
        assert reads.reads == ["j1", "j2", "j1", "j1"]

    asyncio.run(go())


def test_keys_handed_over_by_their_maker_need_no_read() -> None:
    async def go() -> None:
        reads = Reads()
        keys = TaskKeys(reads.load)
        keys.learn("j3", {"x": "kx"}, complete=True)  # a job this process just created
        assert await keys.key("j3", "x") == "kx"
        keys.learn("j1", {"new": "knew"}, complete=False)  # j1 not cached: not kept
        assert len(keys) == 1
        await keys.key("j1", "a")
        keys.learn("j1", {"added": "kadded"}, complete=False)  # tasks an update added
        assert await keys.of("j1", ["a", "added"]) == {"a": "ka", "b": "kb", "added": "kadded"}
        assert reads.reads == ["j1"]

    asyncio.run(go())


def test_the_cache_is_bounded_by_keys_and_keeps_the_job_used_last() -> None:
    async def go() -> None:
        reads = Reads()
        keys = TaskKeys(reads.load, capacity=2)
        await keys.key("j1", "a")  # 2 keys
        await keys.key("j2", "c")  # 3 keys: j1 goes
        assert len(keys) == 1
        keys.learn("big", {f"t{i}": "k" for i in range(5)}, complete=True)  # over the bound alone
        assert len(keys) == 1 and await keys.key("big", "t4") == "k"
        assert reads.reads == ["j1", "j2"]

    asyncio.run(go())


def test_callers_asking_during_a_read_share_it() -> None:
    async def go() -> None:
        reads = Reads()
        gate = asyncio.Event()

        async def slow(job_id: str) -> dict[str, str]:
            await gate.wait()
            return await reads.load(job_id)

        keys = TaskKeys(slow)
        asking = [asyncio.ensure_future(keys.key("j1", t)) for t in ("a", "b", "a")]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*asking) == ["ka", "kb", "ka"]
        assert reads.reads == ["j1"]
        assert await keys.key("j1", "ghost") is None  # unknown afterwards: one more read
        assert reads.reads == ["j1", "j1"]

    asyncio.run(go())
