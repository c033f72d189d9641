"""Fixtures of the agent tests: database, a running notifier, an event recorder, manifests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flame_common.db import init_db
from flame_common.documents import ALL_DOCUMENTS
from flame_common.settings import FlameSettings
from flame_notifier.app import Notifier, running_notifier
from flame_notifier.documents import AgentDoc
from tests.agents.helpers import EventRecorder, ManifestServer, delete_queues


@pytest.fixture
async def db(settings: FlameSettings) -> AsyncIterator[Any]:
    client = await init_db(settings, [*ALL_DOCUMENTS, AgentDoc])
    yield client
    await client.close()
    await delete_queues(settings)


@pytest.fixture
async def recorder(settings: FlameSettings) -> AsyncIterator[EventRecorder]:
    rec = EventRecorder(settings)
    await rec.start()
    yield rec
    await rec.close()


@pytest.fixture
async def notifier(settings: FlameSettings, db: Any) -> AsyncIterator[Notifier]:
    async with running_notifier(settings) as n:
        yield n


@pytest.fixture
def manifests() -> Iterator[ManifestServer]:
    server = ManifestServer()
    server.start()
    yield server
    server.stop()
