"""Reading a namespace's dead letters without consuming them (`GET /deadletters`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError

from flame_common.settings import FlameSettings
from flame_common.topology import declare_queue, topology
from schemas.deadletters import BODY_CHARS, DeadLetter
from schemas.errors import Unavailable

FETCH_TIMEOUT = 5.0  # seconds for each broker round trip


async def peek(settings: FlameSettings, limit: int) -> list[DeadLetter]:
    """The oldest `limit` dead letters; they stay in the queue, in order.

    Each message is fetched unacknowledged; closing the channel gives them all back.
    """
    try:
        connection = await aio_pika.connect(settings.rabbit_url, timeout=FETCH_TIMEOUT)
        async with connection:
            channel = await connection.channel()
            queue = await declare_queue(channel, topology(settings).dead_letter_queue)
            letters: list[DeadLetter] = []
            while len(letters) < limit:
                message = await queue.get(no_ack=False, fail=False, timeout=FETCH_TIMEOUT)
                if message is None:
                    break
                letters.append(_letter(message))
    except (AMQPError, OSError, TimeoutError) as exc:
        raise Unavailable(f"cannot read the dead letters from RabbitMQ: {exc!r}") from exc
    return letters


def _letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = [d for d in headers.get("x-death") or [] if isinstance(d, dict)]
    when = deaths[0].get("time") if deaths else None  # the latest death comes first
    return DeadLetter(
        message_id=message.message_id or "",
        routing_key=message.routing_key or "",  # the original one: kept when dead-lettered
        queue=str(headers.get("x-first-death-queue") or ""),
        reason=str(headers.get("x-first-death-reason") or ""),
        count=sum(int(d.get("count", 1)) for d in deaths) or 1,
        dead_lettered_at=when if isinstance(when, datetime) else None,
        body=message.body[:BODY_CHARS].decode("utf-8", errors="replace"),
    )
