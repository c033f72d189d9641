"""Two ways to drive a controller in tests: in process on the memory adapters, or live services.

Both take commands and bus events, expose what the controller published (`seen`) and read the
log and projections through the store's `JobRecords` port, so one test runs the same on either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from flame_common.bus import publish_event
from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from flame_controller.handlers import handle_command
from flame_controller.memory import MemoryCatalog, MemoryJobStore
from flame_controller.mongo import MongoJobStore
from flame_controller.ports import JobRecords
from flame_controller.service import Controller
from flame_controller.timers import run_timers
from schemas.commands import CommandReply
from schemas.events import EVENT_CLASSES, EventBase
from tests.controller.conftest import Bus
from tests.support.tap import EventLog


def event(type_: str, payload: Any, **envelope: Any) -> EventBase:
    """An event of `type_` as an agent, deployer or notifier would send it."""
    return EVENT_CLASSES[type_](payload=payload, source="test", **envelope)


class Harness:
    """Commands and events in; published events and the store's records out."""

    records: JobRecords
    seen: EventLog  # what the controller published

    async def call(self, cmd: Any) -> CommandReply:
        raise NotImplementedError

    async def publish(self, e: EventBase) -> EventBase:
        """Hand `e` to the controller as the events queue would; returns it."""
        raise NotImplementedError

    async def all_published(self, job_id: str) -> bool:
        """Every event the controller appended for the job went out on the bus."""
        raise NotImplementedError


class InProcess(Harness):
    """A `Controller` on the memory adapters; commands go through the RPC handler's decoding,
    events straight to `observe`; the timers run. No broker, no database."""

    def __init__(self, settings: FlameSettings, catalog: MemoryCatalog) -> None:
        self.settings = settings
        self.store = self.records = MemoryJobStore(settings.stop_grace_seconds)
        self.catalog = catalog
        self.seen = EventLog()
        self.controller = Controller(settings, self.store, catalog, self.seen.extend)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[InProcess]:
        timers = asyncio.create_task(
            run_timers(self.controller, self.store, self.settings.tick_seconds)
        )
        try:
            yield self
        finally:
            timers.cancel()
            await asyncio.gather(timers, return_exceptions=True)

    async def call(self, cmd: Any) -> CommandReply:
        return CommandReply.model_validate(
            await handle_command(self.controller, cmd.model_dump_json().encode())
        )

    async def call_raw(self, body: bytes) -> CommandReply:
        """Hand raw bytes to the RPC handler as they came off the command queue."""
        return CommandReply.model_validate(await handle_command(self.controller, body))

    async def publish(self, e: EventBase) -> EventBase:
        assert e.job_id is not None
        await self.controller.observe(e.job_id, [e])
        return e

    async def all_published(self, job_id: str) -> bool:
        handed = {e.id for e in self.seen.events}
        return all(x.published or x.event.id in handed for x in await self.records.log(job_id))


class Live(Harness):
    """The controller's services (`running_controller`) on RabbitMQ and nx-27017."""

    def __init__(self, settings: FlameSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.records = MongoJobStore(settings.stop_grace_seconds)
        self.seen = bus.seen

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Live]:
        async with running_controller(self.settings):
            yield self

    async def call(self, cmd: Any) -> CommandReply:
        return await self.bus.call(cmd)

    async def publish(self, e: EventBase) -> EventBase:
        await publish_event(self.bus.broker, self.settings, e)
        return e

    async def all_published(self, job_id: str) -> bool:
        return all(x.published for x in await self.records.log(job_id))
