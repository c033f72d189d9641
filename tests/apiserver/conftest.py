"""Apiserver test fixtures: the app on the in-memory adapters (`api`, `stack`) or on real nx-27017
+ RabbitMQ (`app_client`, `tap`, `fake_controller`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from faststream.rabbit import RabbitBroker, RabbitQueue

from flame_apiserver.app import create_app
from flame_apiserver.auth import token_hash
from flame_apiserver.context import ApiPorts
from flame_apiserver.memory import MemoryPublisher, MemoryResources
from flame_apiserver.sse import StreamTiming
from flame_common.bus import names
from flame_common.embedded import free_port
from flame_common.jobs_read import JobRecord, TaskRecord
from flame_common.jobs_read.memory import MemoryJobReads
from flame_common.settings import FlameSettings
from schemas.commands import COMMAND_ADAPTER, Command, CommandReply
from schemas.errors import FlameError
from schemas.events import EventBase
from tests.support.tap import EventTap, event_tap
from tests.support.wait import eventually

EXAMPLES = Path(__file__).parent.parent / "data" / "flame_examples"
ADMIN_TOKEN = "admin-token-of-the-apiserver-tests"  # the bootstrap admin token of every test app
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST_STREAM = StreamTiming(poll_seconds=0.05, keepalive_seconds=0.3)


def example(name: str, file: str) -> Any:
    return json.loads((EXAMPLES / name / file).read_text())


def multipart_parts(response: httpx.Response) -> dict[str, tuple[str, bytes]]:
    """Parse a multipart/form-data response into {form name: (content type, bytes)}."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    parts: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = (part.get_content_type(), part.get_payload(decode=True))
    return parts


def sse_frames(text: str) -> list[dict[str, str]]:
    """Parse SSE text into its frames with data (comments such as keep-alives skipped)."""
    frames = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if not line.startswith(":") and ": " in line
        )
        if "data" in fields:
            frames.append(fields)
    return frames


MNIST_CODE = {
    "trainer/main.py": b"print('trainer')\n",
    "trainer/util.py": b"X = 1\n",
    "aggregator/main.py": b"print('aggregator')\n",
}


@pytest.fixture
async def app_client(settings: FlameSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app (lifespan run: Beanie on the test database, broker started)."""
    async with api_client(settings) as client:
        yield client


@asynccontextmanager
async def api_client(
    settings: FlameSettings, ports: ApiPorts | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of `settings` (lifespan entered) behind an httpx client; on `ports` if given.

    The app's bootstrap admin token is `ADMIN_TOKEN`; the client sends it unless told otherwise.
    """
    settings = settings.with_overrides(admin_token_sha256=token_hash(ADMIN_TOKEN))
    app = create_app(settings, stream_timing=FAST_STREAM, ports=ports)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://flame", timeout=30, headers=ADMIN
        ) as client,
    ):
        yield client


@pytest.fixture
async def tap(settings: FlameSettings) -> AsyncIterator[EventTap]:
    """Every event published on the namespace's events exchange during a test."""
    async with event_tap(settings) as t:
        yield t


Responder = Callable[[Any], CommandReply]


class FakeController:
    """Answers commands like the real controller would; records every command.

    In memory it is the app's `Controller` port (`call`); `fake_controller` serves it on the
    real command queue. Commands and replies go through their JSON form either way.
    """

    def __init__(self) -> None:
        self.commands: list[Any] = []
        self.respond: Responder = lambda cmd: CommandReply.success({})

    def fail_with(self, error: FlameError) -> None:
        self.respond = lambda cmd: CommandReply.failure(error)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        command = COMMAND_ADAPTER.validate_python(body)
        self.commands.append(command)
        return self.respond(command).model_dump(mode="json")

    async def call(self, command: Command) -> dict[str, Any] | list[Any] | None:
        reply = self.answer(command.model_dump(mode="json"))
        return CommandReply.model_validate(reply).unwrap()


@pytest.fixture
async def fake_controller(settings: FlameSettings) -> AsyncIterator[FakeController]:
    fake = FakeController()
    broker = RabbitBroker(settings.rabbit_url, logger=None)

    @broker.subscriber(RabbitQueue(names(settings).command_queue, auto_delete=True))
    async def handle(body: dict[str, Any]) -> dict[str, Any]:
        return fake.answer(body)

    await broker.start()
    yield fake
    await broker.stop()


# --- the app on the in-memory adapters (no service) ---------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class RecordedEvents(MemoryPublisher):
    """The memory publisher, asserting on what was published (events are there once published)."""

    async def wait_for(self, event_type: str, count: int = 1) -> list[EventBase]:
        found = self.of_type(event_type)
        assert len(found) >= count, f"{count} '{event_type}' event(s) expected, got {found}"
        return found


@dataclass
class MemoryStack:
    """The in-memory ports behind `api`, plus seeding of what the controller would write."""

    resources: MemoryResources = field(default_factory=MemoryResources)
    jobs: MemoryJobReads = field(default_factory=MemoryJobReads)
    controller: FakeController = field(default_factory=FakeController)
    events: RecordedEvents = field(default_factory=RecordedEvents)

    def ports(self) -> ApiPorts:
        return ApiPorts(self.resources, self.jobs, self.controller, self.events)

    def job(self, job_id: str, user_id: str, **fields: Any) -> JobRecord:
        values: dict[str, Any] = {"name": "n", "design_id": "d", "spec": {}, "state": "ready"}
        values["created_at"] = T0
        job = JobRecord(job_id=job_id, user_id=user_id, **{**values, **fields})
        self.jobs.put_job(job)
        return job

    def task(self, job_id: str, task_id: str, role: str, key: str, **fields: Any) -> TaskRecord:
        fields.setdefault("timestamp", T0)
        task = TaskRecord(job_id=job_id, task_id=task_id, role=role, key=key, **fields)
        self.jobs.put_task(task)
        return task


@asynccontextmanager
async def served(settings: FlameSettings, stack: MemoryStack) -> AsyncIterator[str]:
    """The app on `stack` behind a real uvicorn on a free port (ASGITransport would buffer
    streams, and a raw HTTP client needs a socket); yields its URL."""
    port = free_port()
    app = create_app(settings, stream_timing=FAST_STREAM, ports=stack.ports())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def stack() -> MemoryStack:
    return MemoryStack()


@pytest.fixture
def memory_settings(tmp_path: Path) -> FlameSettings:
    """Settings of an app on memory adapters: nothing to connect to."""
    return FlameSettings(home=tmp_path / "flame-home", mongo_url="", log_json=False)


@pytest.fixture
async def api(
    memory_settings: FlameSettings, stack: MemoryStack
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app built on `stack`'s in-memory ports."""
    async with api_client(memory_settings, stack.ports()) as client:
        yield client
