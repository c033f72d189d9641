"""Controller test helpers: seeded designs/datasets, an RPC client with an event tap on the bus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_common.bus import make_broker, names, publish_event
from flame_common.db import init_db
from flame_common.documents import CodeDoc, ComputeDoc, DatasetDoc, DesignDoc, EventDoc
from flame_common.proofs import PROOF_HEADER, command_proof
from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryCatalog
from flame_controller.ports import Design
from schemas import commands as c
from schemas.commands import CommandReply
from schemas.events import EventBase, TaskStatusChanged, TaskStatusChangedEvent
from schemas.states import JobState
from tests.controller.examples import COMPUTES, Example, load_example
from tests.support.mosquitto import dynsec_broker  # noqa: F401 (a fixture of these tests)
from tests.support.tap import EventTap
from tests.support.wait import eventually

MNIST_DATASET = "64132c15981345ad7b31da47"


async def seed_example(ex: Example, user: str = "alice", design_id: str | None = None) -> None:
    """Write the design, its code (revision 1), datasets and computes as the apiserver would."""
    design_id = design_id or ex.spec["designId"]
    await DesignDoc(
        user_id=user,
        design_id=design_id,
        schema=ex.schema.wire(),
        schema_revision=1,
        code_revision=1,
    ).insert()
    data = ex.code_zip()
    await CodeDoc(
        user_id=user,
        design_id=design_id,
        revision=1,
        file_name="code.zip",
        data=data,
        size=len(data),
        sha256="-",
    ).insert()
    for ref in ex.datasets.values():
        if await DatasetDoc.find_one({"dataset_id": ref.dataset_id}) is None:
            await DatasetDoc(
                dataset_id=ref.dataset_id,
                user_id=ref.user_id,
                url=ref.url,
                data_format="npy",
                realm="default",
                compute_id=ref.compute_id,
                is_public=ref.is_public,
            ).insert()
    for compute_id, region in COMPUTES.items():
        if await ComputeDoc.find_one({"compute_id": compute_id}) is None:
            await ComputeDoc(compute_id=compute_id, region=region).insert()


def memory_catalog(ex: Example, user: str = "alice") -> MemoryCatalog:
    """An in-memory catalog holding what `seed_example` writes to MongoDB."""
    catalog = MemoryCatalog()
    design = Design(ex.schema.wire(), schema_revision=1, code_revision=1)
    catalog.add_design(user, ex.spec["designId"], design)
    catalog.add_code(user, ex.spec["designId"], 1, ex.code_zip())
    for ref in ex.datasets.values():
        catalog.add_dataset(ref)
    for compute_id in COMPUTES:
        catalog.add_compute(compute_id)
    return catalog


def mnist() -> Example:
    return load_example("mnist", {MNIST_DATASET: "dataset.json"})


class Bus:
    """RPC client and event publisher on one namespace; `seen` taps its events."""

    def __init__(self, settings: FlameSettings) -> None:
        self.settings = settings
        self.broker = make_broker(settings)
        self.seen = EventTap(settings)

    async def start(self) -> None:
        await self.broker.connect()
        await self.seen.start()

    async def stop(self) -> None:
        await self.broker.stop()
        await self.seen.close()

    async def call(self, cmd: Any, timeout: float = 10.0) -> CommandReply:
        body = json.dumps(cmd.model_dump(mode="json")).encode()
        msg = await self.broker.request(  # as the apiserver sends it: proven
            body,
            queue=names(self.settings).command_queue,
            timeout=timeout,
            content_type="application/json",
            headers={PROOF_HEADER: command_proof(self.settings.service_secret, body)},
        )
        return CommandReply.model_validate_json(msg.body)

    async def report(self, state: JobState, **envelope: Any) -> EventBase:
        """Publish a task's `task.status_changed`, as its agent would."""
        payload = TaskStatusChanged(state=state)
        event = TaskStatusChangedEvent(payload=payload, source="test", **envelope)
        await publish_event(self.broker, self.settings, event)
        return event


@pytest.fixture
async def db(settings: FlameSettings) -> AsyncIterator[None]:
    """Beanie bound to the test database (a controller started later re-binds it to its own)."""
    client = await init_db(settings)
    yield
    await client.close()


@pytest.fixture
async def bus(settings: FlameSettings) -> AsyncIterator[Bus]:
    b = Bus(settings)
    await b.start()
    yield b
    await b.stop()


async def job_log(job_id: str) -> list[dict[str, Any]]:
    cursor = EventDoc.get_pymongo_collection().find({"job_id": job_id}, sort=[("seq", 1)])
    return [raw async for raw in cursor]


class ControllerProcess:
    """`python -m flame_controller.main` with FLAME_* env from the test settings."""

    def __init__(self, settings: FlameSettings, log_path: Path) -> None:
        self.env = {
            **os.environ,
            "FLAME_MONGO_URL": settings.mongo_url,
            "FLAME_MONGO_DB": settings.mongo_db,
            "FLAME_RABBIT_URL": settings.rabbit_url,
            "FLAME_NAMESPACE": settings.namespace,
            "FLAME_SERVICE_SECRET": settings.service_secret,
            "FLAME_HOME": str(settings.home),
            "FLAME_STOP_GRACE_SECONDS": "1",
            "FLAME_TICK_SECONDS": "0.2",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flame_controller.main"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def process(settings: FlameSettings, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(settings, tmp_path / "controller.log")
    yield proc
    proc.terminate()


@pytest.fixture
async def seeded(db: None) -> AsyncIterator[None]:
    await seed_example(mnist())
    yield


async def wait_ready(bus: Bus) -> None:
    """Wait until the controller answers commands."""

    async def answers() -> bool:
        try:
            await bus.call(c.StartJob(user_id="probe", job_id="0" * 24), timeout=1)
        except TimeoutError:
            return False
        return True

    await eventually(answers, timeout=30)
