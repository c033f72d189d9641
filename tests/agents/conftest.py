"""Fixtures of the agent tests: database, a running notifier on a clock, an event tap, manifests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flame_common.db import init_db
from flame_common.documents import ALL_DOCUMENTS
from flame_common.settings import FlameSettings
from flame_notifier.app import Notifier, running_notifier
from flame_notifier.documents import AgentDoc
from tests.agents.helpers import ManifestServer, delete_queues
from tests.support.clock import FakeClock
from tests.support.tap import EventTap, event_tap


@pytest.fixture
async def db(settings: FlameSettings) -> AsyncIterator[Any]:
    client = await init_db(settings, [*ALL_DOCUMENTS, AgentDoc])
    yield client
    await client.close()
    await delete_queues(settings)


@pytest.fixture
async def tap(settings: FlameSettings) -> AsyncIterator[EventTap]:
    async with event_tap(settings) as t:
        yield t


@pytest.fixture
def clock() -> FakeClock:
    """The clock the `notifier` fixture times silence on; it moves only when a test says so."""
    return FakeClock()


@pytest.fixture
async def notifier(settings: FlameSettings, db: Any, clock: FakeClock) -> AsyncIterator[Notifier]:
    async with running_notifier(settings, clock) as n:
        yield n


@pytest.fixture
def manifests() -> Iterator[ManifestServer]:
    server = ManifestServer()
    server.start()
    yield server
    server.stop()
