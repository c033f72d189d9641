"""The shared test support itself: bounded waits, the event log, code zips, the fake clock."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from schemas.events import AgentLost, AgentLostEvent, AgentRegistered, AgentRegisteredEvent
from tests.support.clock import FakeClock
from tests.support.tap import EventLog
from tests.support.wait import eventually, wait_until
from tests.support.zips import code_zip, make_zip, scripted_zip, symlink


async def test_eventually_returns_the_first_truthy_value_of_a_sync_or_async_check() -> None:
    calls: list[int] = []

    def grows() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert await eventually(grows, interval=0.001) == [1, 1, 1]

    async def answer() -> str:
        return "done"

    assert await eventually(answer) == "done"


async def test_eventually_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    seen = [1]
    with pytest.raises(AssertionError, match=r"waited 0.05 s for two items; last value seen: F"):
        await eventually(lambda: len(seen) == 2, timeout=0.05, what="two items")
    with pytest.raises(AssertionError, match=r"for .*lambda: len\(seen\) > 5.*last value seen: F"):
        await eventually(lambda: len(seen) > 5, timeout=0.05)  # unnamed: the lambda's source


def test_wait_until_blocks_until_the_check_holds_or_fails_clearly() -> None:
    calls: list[int] = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 2, interval=0.001)
    with pytest.raises(AssertionError, match=r"waited 0.05 s for nothing; last value seen: 0"):
        wait_until(lambda: 0, timeout=0.05, what="nothing")


def _registered(task: str) -> AgentRegisteredEvent:
    return AgentRegisteredEvent(payload=AgentRegistered(agent_id="a"), job_id="j", task_id=task)


async def test_event_log_looks_up_and_waits_by_class() -> None:
    log = EventLog()
    lost = AgentLostEvent(payload=AgentLost(agent_id="a", reason="r"), job_id="j", task_id="t1")
    log.extend([_registered("t1"), lost, _registered("t2")])
    assert log.of(AgentLostEvent) == [lost]
    assert [e.task_id for e in log.of(AgentRegisteredEvent, lambda e: e.task_id == "t2")] == ["t2"]
    assert await log.wait_for(AgentLostEvent) is lost
    assert len(await log.wait_count(AgentRegisteredEvent, 2)) == 2
    with pytest.raises(AssertionError, match=r"3 AgentRegisteredEvent .*events seen: \["):
        await log.wait_count(AgentRegisteredEvent, 3, timeout=0.05)


def test_zips_hold_exactly_the_shapes_asked_for() -> None:
    roles = zipfile.ZipFile(io.BytesIO(code_zip({"trainer": "print(1)\n", "aggregator": "x"})))
    assert sorted(roles.namelist()) == ["aggregator/main.py", "trainer/main.py"]
    assert roles.read("trainer/main.py") == b"print(1)\n"
    odd = zipfile.ZipFile(io.BytesIO(make_zip([("../x", b"1"), symlink("t/link", "/etc")])))
    link = odd.getinfo("t/link")
    assert stat.S_ISLNK(link.external_attr >> 16) and odd.read(link) == b"/etc"
    assert odd.getinfo("../x").filename == "../x"  # written as given, unsafe names included
    scripted = zipfile.ZipFile(io.BytesIO(scripted_zip({"trainer": "ok"})))
    assert scripted.namelist() == ["trainer/main.py"]
    with pytest.raises(FileNotFoundError, match="no test role script 'missing'"):
        scripted_zip({"trainer": "missing"})


def test_fake_clock_moves_only_forward_and_only_when_told() -> None:
    clock = FakeClock(10.0)
    assert clock() == clock() == 10.0
    clock.advance(2.5)
    assert clock() == 12.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
