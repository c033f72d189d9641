"""A job's event log over HTTP: paged reads, and a live SSE stream that reconnects after `seq`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from flame_sdk.client.http import SseMessage, Transport
from schemas.errors import FlameError, Unavailable
from schemas.events import EVENT_CLASSES, EventBase, parse_event

RECONNECT_ATTEMPTS = 8
RECONNECT_DELAY = 0.25  # seconds, doubled after each failed attempt up to RECONNECT_DELAY_MAX
RECONNECT_DELAY_MAX = 5.0


def decode_event(data: Any) -> EventBase | None:
    """A typed event; None for event types this SDK does not know (newer servers)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise FlameError(f"malformed event from the apiserver: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("type") not in EVENT_CLASSES:
        return None
    try:
        return parse_event(data)
    except ValidationError as exc:
        raise FlameError(f"malformed '{data['type']}' event from the apiserver: {exc}") from exc


async def read_pages(
    transport: Transport, path: str, *, after: int, page_size: int
) -> AsyncIterator[EventBase]:
    """Every stored event with seq > `after`, page by page, in seq order."""
    while True:
        page = await transport.json("GET", path, params={"after": after, "limit": page_size})
        page = page or []
        for raw in page:
            event = decode_event(raw)
            seq = raw.get("seq") if isinstance(raw, dict) else None
            after = max(after, seq if isinstance(seq, int) else after)
            if event is not None:
                yield event
        if len(page) < page_size:
            return


async def follow_stream(
    transport: Transport,
    path: str,
    *,
    after: int,
    finished: Callable[[], Awaitable[bool]],
) -> AsyncIterator[EventBase]:
    """Live events with seq > `after`; reconnects with `after=<last seq>` until `finished()`.

    The server ends the stream once the job is terminal; a stream that ends for another reason
    (restart, proxy) or breaks is reopened. Consecutive failures past RECONNECT_ATTEMPTS raise
    Unavailable.
    """
    failures = 0
    while True:
        try:
            async for message in transport.sse(path, {"after": after}):
                failures = 0
                after = max(after, _seq(message))
                event = decode_event(message.data)
                if event is not None:
                    yield event
            if await finished():
                return
        except Unavailable as exc:
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise Unavailable(
                    f"lost the event stream {path} after {RECONNECT_ATTEMPTS} reconnects: "
                    f"{exc.message}"
                ) from exc
        await asyncio.sleep(min(RECONNECT_DELAY * 2 ** max(failures - 1, 0), RECONNECT_DELAY_MAX))


def _seq(message: SseMessage) -> int:
    if message.id and message.id.isdigit():
        return int(message.id)
    try:
        seq = json.loads(message.data).get("seq")
    except (json.JSONDecodeError, AttributeError):
        return 0
    return seq if isinstance(seq, int) else 0
