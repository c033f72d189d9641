"""Failed deliveries on the consumer (quorum) queues: wait, return the message, log its last try.

The broker counts returns (`x-delivery-count`) and dead-letters a message returned
`delivery_limit` times; this module only spaces the attempts (so a store that is briefly away
does not burn them) and logs the attempt after which the broker dead-letters the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from flame_common import metrics
from flame_common.logs import get_logger
from flame_common.settings import FlameSettings

log = get_logger(__name__)

DELIVERY_COUNT = "x-delivery-count"  # set by quorum queues: how often the message came back


def attempt(headers: Mapping[str, Any] | None) -> int:
    """1 on the first delivery, n on the n-th."""
    count = (headers or {}).get(DELIVERY_COUNT) or 0
    return int(count) + 1 if isinstance(count, int) else 1


async def before_return(
    settings: FlameSettings, queue: str, attempts: list[tuple[str, int]], error: str
) -> None:
    """Before failed messages go back ((message id, attempt) each): log those on their last
    attempt (the broker dead-letters them), wait for the others (the delay doubles per attempt)."""
    last = [message_id for message_id, n in attempts if n >= settings.delivery_limit]
    if last:
        # consumer queues are named after their service: <ns>.controller.events, deployer.<id>…
        service = next((p for p in queue.split(".") if p in metrics.SERVICES), queue)
        metrics.dead_lettered(service, "delivery_limit", len(last))
        log.error(
            "message dead-lettered",
            queue=queue,
            attempts=settings.delivery_limit,
            message_ids=last,
            error=error,
        )
    retried = [n for _, n in attempts if n < settings.delivery_limit]
    if retried:
        await asyncio.sleep(settings.redelivery_delay * 2 ** (max(retried) - 1))


@asynccontextmanager
async def processing(
    message: AbstractIncomingMessage, settings: FlameSettings, queue: str
) -> AsyncIterator[None]:
    """Ack when the block succeeds; else wait and return the message (until the broker's limit)."""
    try:
        yield
    except Exception as exc:
        log.warning("message handling failed", queue=queue, error=repr(exc))
        tried = [(message.message_id or "", attempt(message.headers))]
        await before_return(settings, queue, tried, repr(exc))
        await message.nack(requeue=True)
    else:
        await message.ack()
