"""Task output over REST: agents ship chunks by offset (key-checked), owners read them back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from flame_apiserver.auth import token_hash
from flame_apiserver.ports import TokenRecord
from flame_apiserver.routes.logs import CLOCK_SLACK
from flame_common.settings import FlameSettings
from schemas.task import FINAL_LOG_FLUSH, MAX_LOG_CHUNK
from tests.apiserver.conftest import MemoryStack, api_client

KEY = "k" * 32
AGENT = {"X-Flame-Task-Key": KEY}
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
LOGS = "/users/alice/jobs/j1/tasks/t1/logs"


async def _job(stack: MemoryStack, state: str = "running") -> None:
    stack.job("j1", "alice", state="running")
    stack.task("j1", "t1", "trainer", KEY, state=state)
    for user in ("alice", "bob"):
        await stack.resources.add_token(
            TokenRecord(f"tok-{user}", token_hash(f"{user}-token"), user)
        )


async def _ship(api: httpx.AsyncClient, offset: int, data: bytes, **headers: str) -> httpx.Response:
    return await api.post(
        "/jobs/j1/t1/log", params={"offset": offset}, content=data, headers={**AGENT, **headers}
    )


async def test_shipped_chunks_are_read_back_once_with_offsets(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _job(stack)
    assert (await _ship(api, 0, b"epoch 1\n")).json() == {"next": 8}
    assert (await _ship(api, 0, b"epoch 1\n")).json() == {"next": 8}  # a retry: stored once
    assert (await _ship(api, 8, b"epoch 2\n")).json() == {"next": 16}

    r = await api.get(LOGS, headers=ALICE)
    assert r.status_code == 200 and r.content == b"epoch 1\nepoch 2\n"
    assert (r.headers["x-flame-log-start"], r.headers["x-flame-log-next"]) == ("0", "16")
    assert r.headers["x-flame-log-ended"] == "false"
    r = await api.get(LOGS, params={"offset": 8}, headers=ALICE)
    assert r.content == b"epoch 2\n" and r.headers["x-flame-log-start"] == "8"
    admin = await api.get(LOGS)  # the client's default headers: the admin token
    assert admin.status_code == 200 and admin.content == b"epoch 1\nepoch 2\n"


async def test_a_task_that_ended_says_so_once_everything_is_read(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _job(stack, state="completed")
    await _ship(api, 0, b"bye\n")
    r = await api.get(LOGS, headers=ALICE)
    assert r.content == b"bye\n" and r.headers["x-flame-log-ended"] == "true"
    r = await api.get(LOGS, params={"offset": 2, "limit": 1}, headers=ALICE)
    assert r.content == b"e" and r.headers["x-flame-log-ended"] == "false"  # more follows


async def test_output_shipped_after_the_final_status_is_waited_for_within_the_flush_time(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    """The final status announces how many bytes the role wrote; the agent ships the rest
    alongside. Until they are stored (or the flush time is over) the log has not ended."""
    await _job(stack)
    now = datetime.now(UTC)
    stack.task("j1", "t1", "trainer", KEY, state="completed", log_size=9, timestamp=now)
    await _ship(api, 0, b"one\n")
    r = await api.get(LOGS, headers=ALICE)
    assert r.content == b"one\n" and r.headers["x-flame-log-ended"] == "false"
    # a read past what is stored waits for the rest, without being asked to
    waiting = asyncio.create_task(api.get(LOGS, params={"offset": 4}, headers=ALICE))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await _ship(api, 4, b"two\n!")
    r = await asyncio.wait_for(waiting, 5)
    assert r.content == b"two\n!" and r.headers["x-flame-log-ended"] == "true"
    # a flush that never came: the log ends FINAL_LOG_FLUSH (plus slack) after the status
    late = now - timedelta(seconds=FINAL_LOG_FLUSH + CLOCK_SLACK + 1)
    stack.task("j1", "t1", "trainer", KEY, state="completed", log_size=99, timestamp=late)
    r = await api.get(LOGS, headers=ALICE)
    assert r.content == b"one\ntwo\n!" and r.headers["x-flame-log-ended"] == "true"
    stack.task("j1", "t1", "trainer", KEY, state="completed", log_size=99, timestamp=now)
    assert (await api.get(LOGS, headers=ALICE)).headers["x-flame-log-ended"] == "false"


async def test_the_final_status_tail_completes_the_stored_output(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    """The bytes of the final status's tail need no shipping: a read serves them once what
    precedes them is stored."""
    await _job(stack)
    tail = {"log": "two\nthree\n", "log_tail_at": 4, "log_size": 14}
    now = datetime.now(UTC)
    stack.task("j1", "t1", "trainer", KEY, state="completed", timestamp=now, **tail)
    await _ship(api, 0, b"one\n")
    r = await api.get(LOGS, headers=ALICE)
    assert r.content == b"one\ntwo\nthree\n" and r.headers["x-flame-log-ended"] == "true"
    r = await api.get(LOGS, params={"offset": 6}, headers=ALICE)
    assert (r.content, r.headers["x-flame-log-start"]) == (b"o\nthree\n", "6")
    r = await api.get(LOGS, params={"limit": 5}, headers=ALICE)
    assert r.content == b"one\nt" and r.headers["x-flame-log-ended"] == "false"
    assert r.headers["x-flame-log-next"] == "5"
    # a tail that is not the output's end (a reason instead) is not used
    wrong = {**tail, "log": "role code exited with code 1"}
    stack.task("j1", "t1", "trainer", KEY, state="failed", timestamp=now, **wrong)
    r = await api.get(LOGS, params={"wait": 0.2}, headers=ALICE)
    assert r.content == b"one\n" and r.headers["x-flame-log-ended"] == "false"


async def test_only_the_owner_reads_and_only_the_task_key_ships(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _job(stack)
    await _ship(api, 0, b"secret\n")
    assert (await api.get(LOGS, headers=BOB)).status_code == 403
    anonymous = await api.get(LOGS, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert (await api.get("/users/bob/jobs/j1/tasks/t1/logs", headers=BOB)).status_code == 404
    assert (await api.get("/users/alice/jobs/j1/tasks/nope/logs", headers=ALICE)).status_code == 404

    wrong = await _ship(api, 7, b"forged\n", **{"X-Flame-Task-Key": "w" * 32})
    assert wrong.status_code == 401 and "wrong key" in wrong.json()["message"]
    missing = await api.post("/jobs/j1/t1/log", params={"offset": 7}, content=b"x")
    assert missing.status_code == 401
    in_url = await api.post(f"/jobs/j1/t1/log?offset=7&key={KEY}", content=b"x", headers=AGENT)
    assert in_url.status_code == 400
    assert (await api.get(LOGS, headers=ALICE)).content == b"secret\n"


async def test_a_chunk_is_bounded_and_the_store_keeps_the_last_bytes(
    memory_settings: FlameSettings, stack: MemoryStack
) -> None:
    settings = memory_settings.with_overrides(max_task_log_bytes=1024)
    async with api_client(settings, stack.ports()) as api:
        await _job(stack)
        big = await _ship(api, 0, b"x" * (MAX_LOG_CHUNK + 1))
        assert big.status_code == 413 and str(MAX_LOG_CHUNK) in big.json()["message"]
        for i in range(4):
            assert (await _ship(api, i * 512, b"%d" % i * 512)).json() == {"next": (i + 1) * 512}
        r = await api.get(LOGS, headers=ALICE)
        assert r.headers["x-flame-log-start"] == "1024"  # the chunks older than 1 KiB are gone
        assert r.content == b"2" * 512 + b"3" * 512


async def test_a_read_with_wait_returns_when_bytes_arrive(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _job(stack)
    waiting = asyncio.create_task(api.get(LOGS, params={"wait": 5}, headers=ALICE))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await _ship(api, 0, b"late\n")
    r = await asyncio.wait_for(waiting, 5)
    assert r.content == b"late\n"
    # nothing new and the task still runs: the wait ends empty after `wait` seconds
    r = await api.get(LOGS, params={"offset": 5, "wait": 0.2}, headers=ALICE)
    assert r.content == b"" and r.headers["x-flame-log-next"] == "5"
    too_long = await api.get(LOGS, params={"wait": 31}, headers=ALICE)
    assert too_long.status_code == 400 and "wait" in too_long.json()["message"]


async def test_deleting_a_job_forgets_its_output(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    await _job(stack)
    await _ship(api, 0, b"gone\n")
    assert (await api.delete("/users/alice/jobs/j1", headers=ALICE)).status_code == 200
    assert (await stack.resources.task_log("j1", "t1", 0, 100)).data == b""
