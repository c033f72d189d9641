"""Task output through FlameClient and `flamectl logs`, on the apiserver's memory adapters."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flame_common.settings import FlameSettings
from flame_sdk.cli import logs as logs_verb
from flame_sdk.cli import runtime
from flame_sdk.cli.app import app
from flame_sdk.client import FlameClient, TaskLog
from schemas.errors import NotFound
from tests.apiserver.conftest import ADMIN_TOKEN, MemoryStack, api_client
from tests.support.wait import eventually

KEY = "k" * 32


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[MemoryStack, httpx.AsyncBaseTransport]]:
    """A running job of an aggregator and two trainers on the memory app, and its transport."""
    stack = MemoryStack()
    stack.job("j1", "alice", state="running")
    for task_id, role in (("agg1", "aggregator"), ("tb", "trainer"), ("ta", "trainer")):
        stack.task("j1", task_id, role, KEY, state="running")
    settings = FlameSettings(home=tmp_path / "home", mongo_url="", log_json=False)
    async with api_client(settings, stack.ports()) as api:
        yield stack, httpx.ASGITransport(app=api._transport.app)  # type: ignore[attr-defined]


def _client(transport: httpx.AsyncBaseTransport) -> FlameClient:
    return FlameClient("http://flame", "alice", token=ADMIN_TOKEN, transport=transport)


async def _ship(stack: MemoryStack, task_id: str, offset: int, data: bytes) -> None:
    await stack.resources.append_task_log("j1", task_id, offset, data, keep=1 << 20)


async def test_logs_by_task_id_role_index_or_whole_job(
    served: tuple[MemoryStack, httpx.AsyncBaseTransport],
) -> None:
    stack, transport = served
    await _ship(stack, "ta", 0, b"first trainer\n")
    await _ship(stack, "tb", 0, b"second trainer\n")
    await _ship(stack, "agg1", 0, b"aggregator\n")
    async with _client(transport) as client:
        (one,) = await client.jobs.logs("j1", "trainer/1")
        assert (one.task_id, one.label, one.data) == ("tb", "trainer/1", b"second trainer\n")
        assert [p.task_id for p in await client.jobs.logs("j1", "aggregator")] == ["agg1"]
        (part,) = await client.jobs.logs("j1", "ta", offset=6)
        assert part.data == b"trainer\n" and part.next == 14
        every = await client.jobs.logs("j1")
        assert [(p.label, p.data) for p in every] == [
            ("aggregator/0", b"aggregator\n"),
            ("trainer/0", b"first trainer\n"),
            ("trainer/1", b"second trainer\n"),
        ]
        with pytest.raises(NotFound, match="trainer/0, trainer/1"):
            await client.jobs.logs("j1", "trainer")  # two trainers: which one?


async def test_follow_yields_output_as_it_comes_and_ends_with_the_task(
    served: tuple[MemoryStack, httpx.AsyncBaseTransport],
) -> None:
    stack, transport = served
    await _ship(stack, "ta", 0, b"one\n")
    seen: list[TaskLog] = []

    async def follow() -> None:
        async with _client(transport) as client:
            async for part in client.jobs.follow_logs("j1", "trainer/0"):
                seen.append(part)

    following = asyncio.create_task(follow())
    await eventually(lambda: [p.data for p in seen] == [b"one\n"], timeout=10)
    await _ship(stack, "ta", 4, b"two\n")
    await eventually(lambda: [p.data for p in seen] == [b"one\n", b"two\n"], timeout=10)
    assert not following.done() and not seen[-1].ended
    stack.task("j1", "ta", "trainer", KEY, state="completed")
    await asyncio.wait_for(following, 5)
    assert seen[-1].ended


def test_the_printer_prefixes_each_task_line_and_keeps_partial_lines() -> None:
    out = io.BytesIO()
    printer = logs_verb.LogPrinter(out, prefixed=True)
    printer.width = len("aggregator/0")
    printer.show(TaskLog("ta", "trainer/0", 0, b"a\nhal", 6, False))
    printer.show(TaskLog("agg", "aggregator/0", 0, b"x\n", 2, True))
    printer.show(TaskLog("ta", "trainer/0", 6, b"f\n", 8, True))
    assert out.getvalue().decode().splitlines() == [
        "trainer/0    | a",
        "aggregator/0 | x",
        "trainer/0    | half",
    ]
    out = io.BytesIO()
    tail = logs_verb.LogPrinter(out, prefixed=False, tail=2)
    tail.show(TaskLog("ta", "trainer/0", 0, b"1\n2\n3\n", 6, False), first=True)
    assert out.getvalue() == b"2\n3\n"


def test_the_printer_says_when_output_was_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.BytesIO()
    printer = logs_verb.LogPrinter(out, prefixed=False)
    printer.show(TaskLog("ta", "trainer/0", 100, b"kept\n", 105, False), first=True)
    printer.show(TaskLog("ta", "trainer/0", 105, b"more\n", 110, False))
    printer.show(TaskLog("ta", "trainer/0", 200, b"late\n", 205, True))
    assert out.getvalue() == b"kept\nmore\nlate\n"
    assert capsys.readouterr().err.splitlines() == [
        "[trainer/0: 100 bytes of output dropped; the apiserver keeps the last "
        "FLAME_MAX_TASK_LOG_BYTES of each task]",
        "[trainer/0: 90 bytes of output dropped; the apiserver keeps the last "
        "FLAME_MAX_TASK_LOG_BYTES of each task]",
    ]


def test_flamectl_logs_prints_a_task_and_a_job(
    served: tuple[MemoryStack, httpx.AsyncBaseTransport],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    stack, transport = served
    asyncio.run(_ship(stack, "ta", 0, b"hello\nworld\n"))
    for name in ("FLAME_CONFIG", "FLAME_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("FLAME_APISERVER", "http://flame")
    monkeypatch.setenv("FLAME_USER", "alice")
    monkeypatch.setenv("FLAME_TOKEN", ADMIN_TOKEN)
    monkeypatch.setattr(runtime, "FlameClient", functools.partial(FlameClient, transport=transport))
    runner = CliRunner()
    result = runner.invoke(app, ["logs", "j1", "trainer/0", "--tail", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "world\n"
    result = runner.invoke(app, ["logs", "j1"])
    assert result.exit_code == 0 and "trainer/0    | hello" in result.stdout
    missing = runner.invoke(app, ["logs", "j1", "nobody"])
    assert missing.exit_code == 6 and "no task 'nobody'" in missing.stderr
