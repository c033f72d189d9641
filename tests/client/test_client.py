"""Resource clients against a fake apiserver: requests sent, models returned, event streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flame_sdk.client import FlameClient
from flame_sdk.client import events as events_module
from schemas.dataset import DatasetInfo
from schemas.design import DesignSchema
from schemas.errors import Unavailable
from schemas.events import event_json, parse_event
from schemas.job import JobSpec
from schemas.states import JobState
from tests.client.fakes import FakeApi, json_response, sse_response

JOB = "/users/alice/jobs/j1"


def event(seq: int, type_: str, payload: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    e = parse_event(
        {"type": type_, "payload": payload, "job_id": "j1", "task_id": task, "seq": seq}
    )
    return json.loads(event_json(e))


def changed(seq: int, frm: str, to: str) -> dict[str, Any]:
    return event(seq, "job.state_changed", {"from_state": frm, "to_state": to})


def task_status(seq: int, task: str, state: str) -> dict[str, Any]:
    return event(seq, "task.status_changed", {"state": state}, task)


def created(seq: int, task: str) -> dict[str, Any]:
    return event(seq, "task.created", {"role": "r", "compute_id": "default"}, task)


def status_body(state: str) -> dict[str, Any]:
    return {"id": "j1", "name": "job", "state": state}


@pytest.fixture(autouse=True)
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "RECONNECT_DELAY", 0.0)


async def test_design_schema_code_requests(api: FakeApi, client: FlameClient) -> None:
    api.on("POST", "/users/alice/designs", 201, None)
    api.on("POST", "/users/alice/designs/d%2F1/schema", 201, None)
    api.on(
        "GET",
        "/users/alice/designs/d%2F1/schema",
        body={"revision": 3, "roles": [], "channels": []},
    )
    api.on("POST", "/users/alice/designs/mnist/code", 201, {"revision": 2})
    info = await client.designs.create("mnist", description="digits")
    assert (info.id, info.description, info.user_id) == ("mnist", "digits", "alice")
    assert json.loads(api.requests[0].content) == {
        "id": "mnist",
        "name": "",
        "description": "digits",
        "userId": "alice",
    }
    schema = await client.schemas.create("d/1", DesignSchema(roles=[], channels=[]))
    assert schema.revision == 3  # the server answered null: the client read the schema back
    assert api.requests[1].url.raw_path == b"/users/alice/designs/d%2F1/schema"
    assert await client.code.upload("mnist", b"PK\x05\x06" + bytes(18), file_name="m.zip") == 2
    upload = api.requests[-1]
    assert b'name="fileName"' in upload.content and b'filename="m.zip"' in upload.content


async def test_dataset_create_accepts_both_id_shapes(api: FakeApi, client: FlameClient) -> None:
    dataset = DatasetInfo(url="file:///x", data_format="npy", realm="default")
    api.on("POST", "/users/alice/datasets", 201, "abc123")
    assert await client.datasets.create(dataset) == "abc123"
    api.on("POST", "/users/alice/datasets", 201, {"id": "def456"})
    assert await client.datasets.create(dataset) == "def456"
    body = json.loads(api.requests[0].content)
    assert body["url"] == "file:///x" and "id" not in body and "computeId" not in body


async def test_job_commands(api: FakeApi, client: FlameClient) -> None:
    api.on("POST", "/users/alice/jobs", 201, status_body("ready"))
    api.on("PUT", f"{JOB}/status", 200, status_body("starting"))
    spec = JobSpec(name="job", design_id="d", backend="mqtt")
    assert (await client.jobs.create(spec)).state is JobState.READY
    assert json.loads(api.requests[0].content)["designId"] == "d"
    assert (await client.jobs.start("j1")).state is JobState.STARTING
    assert json.loads(api.requests[1].content) == {"id": "j1", "state": "starting"}
    api.on("PUT", f"{JOB}/status", 200, None)  # Flame answers null: the client reads the status
    api.on("GET", f"{JOB}/status", 200, status_body("stopping"))
    assert (await client.jobs.stop("j1")).state is JobState.STOPPING


async def test_events_are_paged_and_unknown_types_skipped(
    api: FakeApi, client: FlameClient
) -> None:
    log = [created(1, "a"), {**created(2, "b"), "type": "from.the.future"}, created(3, "c")]

    def page(request: httpx.Request) -> httpx.Response:
        after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
        return json_response(200, [e for e in log if e["seq"] > after][:limit])

    api.handle("GET", f"{JOB}/events", page)
    seen = [e.seq async for e in client.jobs.events("j1", page_size=2)]
    assert seen == [1, 3]
    afters = [r.url.params["after"] for r in api.sent("GET", f"{JOB}/events")]
    assert afters == ["0", "2"]


class BrokenStream(httpx.AsyncByteStream):
    """Sends some SSE bytes, then the connection breaks."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset")


async def test_follow_reconnects_after_the_last_seq(api: FakeApi, client: FlameClient) -> None:
    first = sse_response([created(1, "a"), created(2, "b")]).content
    answers = iter(
        [
            lambda: httpx.Response(200, stream=BrokenStream(first)),
            lambda: (_ for _ in ()).throw(httpx.ConnectError("refused")),
            lambda: sse_response([changed(3, "ready", "starting")]),  # ends cleanly, not terminal
            lambda: sse_response([changed(4, "starting", "failed")]),
        ]
    )
    api.handle("GET", f"{JOB}/events/stream", lambda _r: next(answers)())
    states = iter(["starting", "failed"])
    api.handle("GET", f"{JOB}/status", lambda _r: json_response(200, status_body(next(states))))
    seen = [e.seq async for e in client.jobs.events("j1", follow=True)]
    assert seen == [1, 2, 3, 4]
    afters = [r.url.params["after"] for r in api.sent("GET", f"{JOB}/events/stream")]
    assert afters == ["0", "2", "2", "3"]


async def test_follow_gives_up_after_repeated_failures(
    api: FakeApi, client: FlameClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "RECONNECT_ATTEMPTS", 2)

    def refuse(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    api.handle("GET", f"{JOB}/events/stream", refuse)
    with pytest.raises(Unavailable, match="after 2 reconnects"):
        async for _ in client.jobs.events("j1", follow=True):
            pass
    assert len(api.sent("GET", f"{JOB}/events/stream")) == 3


async def test_watch_folds_history_then_follows(api: FakeApi, client: FlameClient) -> None:
    history = [created(1, "a"), created(2, "b"), changed(3, "ready", "starting")]
    live = [
        event(4, "worker.requested", {"compute_id": "default", "task_ids": ["a", "b"]}),
        task_status(5, "a", "running"),
        changed(6, "deploying", "running"),
        task_status(7, "a", "completed"),
        changed(8, "running", "completed"),
    ]
    api.handle(
        "GET",
        f"{JOB}/events",
        lambda r: json_response(200, [e for e in history if e["seq"] > int(r.url.params["after"])]),
    )
    api.handle("GET", f"{JOB}/events/stream", lambda _r: sse_response(live))
    tasks = [
        {"jobId": "j1", "taskId": "a", "role": "r", "state": "completed"},
        {"jobId": "j1", "taskId": "b", "role": "r", "state": "terminated"},
    ]
    api.on("GET", f"{JOB}/tasks", body=tasks)
    snapshots = [p async for p in client.jobs.watch("j1")]
    assert [p.state for p in snapshots] == [
        JobState.STARTING,  # the folded history
        JobState.STARTING,  # task a running
        JobState.RUNNING,
        JobState.RUNNING,  # task a completed
        JobState.COMPLETED,
    ]
    assert snapshots[0].counts() == {JobState.READY: 2}
    assert snapshots[1].tasks == {"a": JobState.RUNNING, "b": JobState.READY}
    assert snapshots[-1].tasks == {"a": JobState.COMPLETED, "b": JobState.TERMINATED}  # re-read
    assert api.sent("GET", f"{JOB}/events/stream")[0].url.params["after"] == "3"


async def test_watch_of_a_finished_job_returns_at_once(api: FakeApi, client: FlameClient) -> None:
    api.on("GET", f"{JOB}/events", body=[created(1, "a"), changed(2, "running", "terminated")])
    api.on(
        "GET",
        f"{JOB}/tasks",
        body=[{"jobId": "j1", "taskId": "a", "role": "r", "state": "terminated"}],
    )
    snapshots = [p async for p in client.jobs.watch("j1")]
    assert len(snapshots) == 1
    assert (snapshots[0].state, snapshots[0].tasks) == (
        JobState.TERMINATED,
        {"a": JobState.TERMINATED},
    )
    assert api.sent("GET", f"{JOB}/events/stream") == []
