"""The agent's log shipper: the role's output goes out in bounded chunks by offset, once, without
trusting the file (links, FIFOs) and without ever holding the task up."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path

import pytest

from flame_apiserver.memory import MemoryResources
from flame_common.settings import FlameSettings
from flamelet.logship import LogSender, LogShipper, Shipped
from tests.apiserver.conftest import MemoryStack, served
from tests.support.wait import eventually


class Store:
    """A send into the apiserver's memory store; `fail` sends fail, `hang` ones store, then hang."""

    def __init__(self) -> None:
        self.resources = MemoryResources()
        self.calls: list[tuple[int, int]] = []
        self.fail = 0
        self.hang = 0

    async def __call__(self, offset: int, data: bytes) -> None:
        self.calls.append((offset, len(data)))
        if self.fail:
            self.fail -= 1
            raise OSError("apiserver away")
        await self.resources.append_task_log("j", "t", offset, data, keep=1 << 20)
        if self.hang:
            self.hang -= 1
            await asyncio.sleep(60)

    async def stored(self) -> bytes:
        return (await self.resources.task_log("j", "t", 0, 1 << 20)).data


async def test_new_bytes_go_out_from_the_offset_shipped(tmp_path: Path) -> None:
    log, store = tmp_path / "task.log", Store()
    shipper = LogShipper(log, store)
    assert await shipper.ship_once() is Shipped.IDLE  # no file yet
    log.write_bytes(b"round 1\n")
    assert await shipper.ship_once() is Shipped.SENT
    with open(log, "ab") as f:
        f.write(b"round 2\npart")
    assert await shipper.ship_once() is Shipped.SENT
    assert await shipper.ship_once() is Shipped.IDLE
    assert store.calls == [(0, 8), (8, 12)]
    assert await store.stored() == b"round 1\nround 2\npart"


async def test_a_failed_or_slow_send_is_retried_from_the_same_offset_and_stored_once(
    tmp_path: Path,
) -> None:
    log, store = tmp_path / "task.log", Store()
    log.write_bytes(b"hello\n")
    shipper = LogShipper(log, store, timeout=0.2)
    store.fail = 1
    assert await shipper.ship_once() is Shipped.FAILED
    store.hang = 1  # stored, but the answer never comes: the shipper gives up on it
    assert await shipper.ship_once() is Shipped.FAILED
    assert (shipper.offset, shipper.failures) == (0, 2)
    assert await shipper.ship_once() is Shipped.SENT
    assert store.calls == [(0, 6), (0, 6), (0, 6)]
    assert await store.stored() == b"hello\n"  # no duplicate


async def test_chunks_and_backlog_are_bounded(tmp_path: Path) -> None:
    log, store = tmp_path / "task.log", Store()
    log.write_bytes(b"a" * 100 + b"b" * 50)
    shipper = LogShipper(log, store, chunk=40, backlog=60)
    await shipper.flush(5)
    # 150 bytes, 60 at most behind: the first 90 are skipped, the rest goes in 40-byte chunks
    assert store.calls == [(90, 40), (130, 20)]
    assert shipper.skipped == 90
    stored = await store.resources.task_log("j", "t", 0, 1000)
    assert (stored.start, stored.data) == (90, b"a" * 10 + b"b" * 50)


async def test_a_link_or_fifo_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not the task's\n")
    log, store = tmp_path / "task.log", Store()
    log.symlink_to(secret)
    shipper = LogShipper(log, store)
    assert await shipper.ship_once() is Shipped.IDLE
    log.unlink()
    os.mkfifo(log)  # opened without blocking, then refused: not a regular file
    assert await asyncio.wait_for(shipper.ship_once(), 2) is Shipped.IDLE
    assert store.calls == []


async def test_flush_gives_up_in_time_when_the_apiserver_is_away(tmp_path: Path) -> None:
    log, store = tmp_path / "task.log", Store()
    log.write_bytes(b"last words\n")
    store.fail = 1_000
    shipper = LogShipper(log, store)
    started = time.monotonic()
    await shipper.flush(0.5)
    assert time.monotonic() - started < 2
    assert shipper.offset == 0 and len(store.calls) >= 1


async def test_flush_stops_after_two_refused_sends_well_before_its_budget(tmp_path: Path) -> None:
    """An apiserver that answers with an error (e.g. 501) does not hold the final status up for
    the whole flush budget."""
    log, store = tmp_path / "task.log", Store()
    log.write_bytes(b"last words\n")
    store.fail = 1_000
    shipper = LogShipper(log, store)
    started = time.monotonic()
    await shipper.flush(30)
    assert time.monotonic() - started < 5
    assert len(store.calls) == 2 and shipper.offset == 0


async def test_run_ships_while_the_role_writes_and_stops_when_cancelled(tmp_path: Path) -> None:
    log, store = tmp_path / "task.log", Store()
    shipper = LogShipper(log, store, interval=0.05)
    running = asyncio.create_task(shipper.run())
    expected = b""
    for i in range(3):
        with open(log, "ab") as f:
            f.write(b"line %d\n" % i)
        expected += b"line %d\n" % i
        await eventually(functools.partial(_stored_is, store, expected), timeout=10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert len(store.calls) == 3  # one send per line written, nothing sent twice


async def _stored_is(store: Store, expected: bytes) -> bool:
    return await store.stored() == expected


async def test_the_sender_speaks_the_agent_route(tmp_path: Path) -> None:
    memory_settings = FlameSettings(home=tmp_path / "home", mongo_url="", log_json=False)
    stack = MemoryStack()
    stack.job("j1", "alice", state="running")
    stack.task("j1", "t1", "trainer", "k" * 32, state="running")
    async with served(memory_settings, stack) as url:
        good = LogSender(url, "j1", "t1", "k" * 32)
        await good(0, b"shipped\n")
        await good(0, b"shipped\n")
        await good(8, b"more\n")
        wrong = LogSender(url, "j1", "t1", "w" * 32)
        with pytest.raises(OSError, match="401"):
            await wrong(13, b"forged\n")
        with pytest.raises(OSError, match="404"):
            await LogSender(url, "j1", "t2", "k" * 32)(0, b"nobody\n")
    assert (await stack.resources.task_log("j1", "t1", 0, 100)).data == b"shipped\nmore\n"


def test_the_tail_is_located_only_when_it_is_the_output_end_exactly(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes(b"one\ntwo\n\xff\xfethree\n")
    shipper = LogShipper(log, Store())
    size = log.stat().st_size
    assert shipper.tail_at("three\n", size) == size - 6
    assert shipper.tail_at("", size) == size
    assert shipper.tail_at("\ufffd\ufffdthree\n", size) is None  # decoded with replacements
    assert shipper.tail_at("two\n", size) is None  # not the end
    assert shipper.tail_at("x" * (size + 1), size) is None
    log.unlink()
    log.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"three\n")
    assert shipper.tail_at("three\n", 6) is None  # a link is not followed
