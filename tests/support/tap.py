"""Typed event logs to wait on: `EventLog` (filled by the test) and `EventTap` (every event of a
namespace's events exchange on the real broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

import aio_pika

from flame_common import amqp
from flame_common.settings import FlameSettings
from schemas.events import EventBase, parse_event
from tests.support.wait import TIMEOUT, describe, eventually

E = TypeVar("E", bound=EventBase)


def _any(event: EventBase) -> bool:
    return True


class EventLog:
    """Events in arrival order, looked up and waited for by class (`schemas.events`)."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def extend(self, events: Iterable[EventBase]) -> None:
        self.events.extend(events)

    def of(self, kind: type[E], where: Callable[[E], bool] = _any) -> list[E]:
        """The events seen so far of class `kind` for which `where` holds."""
        return [e for e in self.events if isinstance(e, kind) and where(e)]

    async def wait_for(
        self, kind: type[E], where: Callable[[E], bool] = _any, *, timeout: float = TIMEOUT
    ) -> E:
        """The first `kind` event for which `where` holds, waiting up to `timeout` seconds."""
        return (await self.wait_count(kind, 1, where, timeout=timeout))[0]

    async def wait_count(
        self,
        kind: type[E],
        count: int,
        where: Callable[[E], bool] = _any,
        *,
        timeout: float = TIMEOUT,
    ) -> list[E]:
        """All matching events once there are at least `count` of them."""

        def enough() -> list[E]:
            found = self.of(kind, where)
            return found if len(found) >= count else []

        def what() -> str:
            condition = "" if where is _any else f" matching {describe(where)}"
            seen = [e.type for e in self.events]
            return f"{count} {kind.__name__}{condition} (events seen: {seen})"

        return await eventually(enough, timeout=timeout, interval=0.02, what=what)


class EventTap(EventLog):
    """The events published on the events exchange of `settings`' namespace (real broker)."""

    def __init__(self, settings: FlameSettings) -> None:
        super().__init__()
        self.settings = settings
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self._connection = await amqp.connect(self.settings, name="test-tap")
        channel = await self._connection.channel()
        exchange = await amqp.events_exchange(channel, self.settings)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on, no_ack=True)

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append(parse_event(message.body))

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


@asynccontextmanager
async def event_tap(settings: FlameSettings) -> AsyncIterator[EventTap]:
    """A started tap on `settings`' namespace, closed on exit."""
    tap = EventTap(settings)
    await tap.start()
    try:
        yield tap
    finally:
        await tap.close()
