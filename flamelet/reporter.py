"""Reliable status reports: confirmed publishing retried through outages, final report on disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aio_pika import Message
from aio_pika.abc import AbstractExchange

from flame_common import amqp
from flame_common.logs import get_logger
from flame_common.proofs import task_proof
from schemas.events import EventBase, event_json, parse_event

log = get_logger(__name__)

PENDING_FILE = "final-report.json"


async def publish_until_confirmed(
    exchange: AbstractExchange, message: Message, routing_key: str, *, max_delay: float = 5.0
) -> None:
    """Publish `message` until the broker confirms it; retries through reconnects."""
    delay = 0.1
    while True:
        try:
            await exchange.publish(message, routing_key=routing_key, timeout=10)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection/channel lost, nack, timeout: the robust link heals
            log.warning(
                "publish failed, retrying", type=message.type, error=str(exc) or type(exc).__name__
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


class FinalReport:
    """The task's last status: written to the work dir first, removed once the broker has it
    (proven with the task's `key`)."""

    def __init__(self, work_dir: Path, key: str) -> None:
        self.path = work_dir / PENDING_FILE
        self._key = key

    def pending(self) -> EventBase | None:
        """A report a previous run of this agent could not deliver."""
        if not self.path.exists():
            return None
        return parse_event(self.path.read_bytes())

    def keep(self, event: EventBase) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(event_json(event))
        os.replace(tmp, self.path)

    async def send(self, exchange: AbstractExchange, event: EventBase) -> None:
        message = amqp.event_message(event, proof=task_proof(self._key, event))
        await publish_until_confirmed(exchange, message, event.type)
        self.path.unlink(missing_ok=True)
