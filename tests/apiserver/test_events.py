"""A job's event log over REST: pages ordered by seq, and the SSE stream (replay, live, end)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from flame_apiserver.app import create_app
from flame_apiserver.auth import token_hash
from flame_common.documents import EventDoc, JobDoc
from flame_common.embedded import free_port
from flame_common.settings import FlameSettings
from schemas.events import parse_event
from schemas.states import JobState
from tests.apiserver.conftest import ADMIN, ADMIN_TOKEN, FAST_STREAM, MemoryStack, sse_frames
from tests.support.wait import eventually

U = "alice"


def _body(job_id: str, seq: int, event_type: str, payload: dict[str, Any]) -> Any:
    """An event as the controller logs it (body = envelope with seq)."""
    raw = {"type": event_type, "payload": payload, "job_id": job_id, "source": "controller"}
    return parse_event({**raw, "seq": seq})


def _job(stack: MemoryStack, state: str = "running", job_id: str = "j1") -> None:
    stack.job(job_id, U, state=state)


async def _append(
    stack: MemoryStack, job_id: str, seq: int, event_type: str, payload: dict[str, Any]
) -> None:
    """Log one event and move the job's `last_seq`, as the controller does."""
    stack.jobs.log_event(
        job_id, seq, _body(job_id, seq, event_type, payload).model_dump(mode="json")
    )
    job = await stack.jobs.job(job_id)
    if job is not None:
        stack.jobs.put_job(dataclasses.replace(job, last_seq=seq))


def _state(from_: str, to: str) -> dict[str, str]:
    return {"from_state": from_, "to_state": to}


async def test_event_pages(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    _job(stack)
    assert (await api.get(f"/users/{U}/jobs/j1/events")).json() == []
    for seq in (3, 1, 2):  # inserted out of order, read in seq order
        await _append(stack, "j1", seq, "job.state_changed", _state("ready", "starting"))
    await _append(stack, "j1", 4, "task.status_changed", {"state": "running"})
    events = (await api.get(f"/users/{U}/jobs/j1/events/")).json()
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert parse_event(events[3]).payload.state is JobState.RUNNING
    page = (await api.get(f"/users/{U}/jobs/j1/events?after=1&limit=2")).json()
    assert [e["seq"] for e in page] == [2, 3]
    assert (await api.get(f"/users/{U}/jobs/j1/events?limit=0")).status_code == 400
    assert (await api.get(f"/users/{U}/jobs/j1/events?after=x")).status_code == 400
    assert (await api.get("/users/bob/jobs/j1/events")).status_code == 404
    assert (await api.get(f"/users/{U}/jobs/nope/events")).status_code == 404


async def test_deleted_job_log_stays_readable(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    _job(stack)
    spec = {"name": "n", "designId": "d", "backend": "mqtt"}
    await _append(stack, "j1", 1, "job.created", {"user_id": U, "spec": spec, "task_count": 0})
    await _append(stack, "j1", 2, "job.deleted", {"user_id": U})
    stack.jobs.remove_job("j1")
    assert len((await api.get(f"/users/{U}/jobs/j1/events")).json()) == 2
    assert (await api.get("/users/bob/jobs/j1/events")).status_code == 404
    r = await api.get(f"/users/{U}/jobs/j1/events/stream")
    assert [f["id"] for f in sse_frames(r.text)] == ["1", "2"]


async def test_stream_of_finished_job_replays_and_ends(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    _job(stack, state="completed")
    await _append(stack, "j1", 1, "job.state_changed", _state("ready", "starting"))
    await _append(stack, "j1", 2, "job.state_changed", _state("running", "completed"))
    r = await api.get(f"/users/{U}/jobs/j1/events/stream")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(r.text)
    assert [(f["id"], f["event"]) for f in frames] == [
        ("1", "job.state_changed"),
        ("2", "job.state_changed"),
    ]
    assert json.loads(frames[1]["data"])["payload"]["to_state"] == "completed"
    after = await api.get(f"/users/{U}/jobs/j1/events/stream?after=1")
    assert [f["id"] for f in sse_frames(after.text)] == ["2"]
    resumed = await api.get(f"/users/{U}/jobs/j1/events/stream", headers={"Last-Event-ID": "2"})
    assert sse_frames(resumed.text) == []
    assert (await api.get("/users/bob/jobs/j1/events/stream")).status_code == 404


# --- over the real services: uvicorn on nx-27017, the log written as the controller's documents ---


async def _live_append(job_id: str, seq: int, event_type: str, payload: dict[str, Any]) -> None:
    event = _body(job_id, seq, event_type, payload)
    await EventDoc(
        event_id=event.id, type=event.type, job_id=job_id, seq=seq, published=True,
        body=event.model_dump(mode="json"),
    ).insert()  # fmt: skip
    await JobDoc.find_one({"job_id": job_id}).update({"$set": {"last_seq": seq}})  # type: ignore[union-attr]


@pytest.fixture
async def live_server(settings: FlameSettings) -> AsyncIterator[str]:
    """The app served by a real uvicorn (ASGITransport buffers responses, SSE needs a socket)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(
            settings.with_overrides(admin_token_sha256=token_hash(ADMIN_TOKEN)),
            stream_timing=FAST_STREAM,
        ),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=20, interval=0.02, what="uvicorn started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.mark.integration
async def test_live_stream_follows_until_terminal(live_server: str) -> None:
    await JobDoc(job_id="j1", user_id=U, name="n", design_id="d", spec={}, state="running").insert()
    await _live_append("j1", 1, "job.state_changed", _state("deploying", "running"))
    seen: list[dict[str, str]] = []
    keepalives = 0
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=30, headers=ADMIN) as client,
        client.stream("GET", f"/users/{U}/jobs/j1/events/stream/") as response,
    ):
        assert response.status_code == 200
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                if block.startswith(": keep-alive"):
                    keepalives += 1
                    if keepalives == 1:  # the stream is idle and alive: the job now finishes
                        await _live_append("j1", 2, "task.status_changed", {"state": "completed"})
                        await _live_append(
                            "j1", 3, "job.state_changed", _state("running", "completed")
                        )
                        await JobDoc.find_one({"job_id": "j1"}).update(
                            {"$set": {"state": "completed"}}
                        )  # type: ignore[union-attr]
                seen.extend(sse_frames(block + "\n\n"))
    assert keepalives >= 1
    assert [(f["id"], f["event"]) for f in seen] == [
        ("1", "job.state_changed"),
        ("2", "task.status_changed"),
        ("3", "job.state_changed"),
    ]
