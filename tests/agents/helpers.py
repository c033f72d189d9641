"""Agent test helpers: a stand-in manifest server, controller events, a TCP cut-off."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from flame_common import amqp
from flame_common.busnames import names
from flame_common.proofs import service_proof
from flame_common.settings import FlameSettings
from schemas.events import (
    EventBase,
    WorkerReleased,
    WorkerReleasedEvent,
    WorkerRequested,
    WorkerRequestedEvent,
)
from schemas.task import TASK_KEY_HEADER
from tests.support.zips import ROLE_SCRIPTS, scripted_zip

ROLES = ROLE_SCRIPTS  # the test role scripts, one folder each


def multipart(parts: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, data in parts.items():
        body += (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class ManifestServer:
    """Serves `GET /jobs/{job}/{task}/task` (key in header X-Flame-Task-Key) like the apiserver
    (for agent-only tests); a key in the URL is refused (400) as the apiserver does."""

    tasks: dict[tuple[str, str], tuple[str, dict[str, Any], bytes]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    port: int = 0  # 0: any free port

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, job_id: str, task_id: str, key: str, role: str, script: str) -> None:
        config: dict[str, Any] = {
            "backend": "rabbitmq",
            "job": {"id": job_id, "name": "j"},
            "role": role,
            "realm": "",
            "channels": [],
            "groupAssociation": None,
        }
        self.tasks[(job_id, task_id)] = (key, config, scripted_zip({role: script}))

    def start(self) -> None:
        tasks = self.tasks

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                key = self.headers.get(TASK_KEY_HEADER, "")
                entry = tasks.get((parts[1], parts[2])) if len(parts) == 4 else None
                if "key" in parse_qs(url.query) or entry is None or entry[0] != key:
                    self.send_response(400 if url.query else 401 if entry else 404)
                    self.end_headers()
                    return
                body, ctype = multipart(
                    {"config": json.dumps(entry[1]).encode(), "code.zip": entry[2]}
                )
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


OWN_QUEUES = ("notifier", amqp.NOTIFIER_INBOX, "deployer.default")


async def delete_queues(settings: FlameSettings) -> None:
    """Remove the durable queues the agent side declared in a test namespace."""
    connection = await amqp.connect(settings, name="test-cleanup")
    async with connection:
        channel = await connection.channel()
        for consumer in OWN_QUEUES:
            await channel.queue_delete(names(settings).queue(consumer))


def requested(
    job: str, tasks: list[str], compute: str = "default", type_: str = "worker.requested"
) -> EventBase:
    """A `worker.requested` (or `type_`, e.g. `worker.released`) event of the controller."""
    if type_ == "worker.released":
        released = WorkerReleased(compute_id=compute, task_ids=tasks)
        return WorkerReleasedEvent(payload=released, job_id=job, source="controller")
    payload = WorkerRequested(compute_id=compute, task_ids=tasks)
    return WorkerRequestedEvent(payload=payload, job_id=job, source="controller")


async def publish(settings: FlameSettings, event: EventBase) -> None:
    """Publish an event as the controller would (proven with the service secret)."""
    connection = await amqp.connect(settings, name="test-publisher")
    async with connection:
        channel = await connection.channel()
        exchange = await amqp.events_exchange(channel, settings)
        proof = service_proof(settings.service_secret, event)
        await exchange.publish(amqp.event_message(event, proof=proof), routing_key=event.type)


class CutOffProxy:
    """A TCP proxy to RabbitMQ that a test can cut (drop every connection, refuse new ones)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5672) -> None:
        self.target = (host, port)
        self.open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.transport.abort()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
