"""RPC client of the controller: job commands over RabbitMQ with correlated replies and a timeout.

FastStream's `broker.request` serialises all requests of a broker behind one lock (RabbitMQ's
direct reply-to), so one slow command would stall every other HTTP request. This client instead
owns an exclusive reply queue and matches replies to waiting requests by correlation id, so
commands run concurrently; each waits at most `settings.rpc_timeout` seconds. Commands carry an
expiration equal to that timeout, so a controller that starts later never executes a request
whose caller already got a 503. Each carries a proof keyed with the service secret
(`flame_common.proofs.command_proof`), without which the controller refuses it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aio_pika.exceptions import AMQPError
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from pamqp.commands import Basic

from flame_common import metrics
from flame_common.bus import rabbit_queue
from flame_common.logs import get_logger
from flame_common.proofs import PROOF_HEADER, command_proof
from flame_common.settings import FlameSettings
from flame_common.topology import topology
from schemas.commands import Command, CommandReply
from schemas.errors import Unavailable

log = get_logger(__name__)


class ControllerClient:
    """Send `schemas.commands` to the controller and return the unwrapped reply result."""

    def __init__(self, broker: RabbitBroker, settings: FlameSettings) -> None:
        self._broker = broker
        self._timeout = settings.rpc_timeout
        self._secret = settings.service_secret
        self._command_queue = topology(settings).commands.name
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.reply_queue = rabbit_queue(topology(settings).replies(uuid.uuid4().hex[:12]))

        async def on_reply(body: Any, message: RabbitMessage) -> None:
            future = self._pending.get(message.correlation_id or "")
            if future is not None and not future.done():
                future.set_result(body)

        broker.subscriber(self.reply_queue, no_reply=True)(on_reply)

    async def call(self, command: Command) -> dict[str, Any] | list[Any] | None:
        """Send one command; raises the controller's FlameError, or Unavailable on no answer."""
        started, outcome = time.perf_counter(), "unavailable"
        try:
            reply = await self._call(command)
            outcome = "ok" if reply.ok else "error"
        finally:
            elapsed = time.perf_counter() - started
            metrics.timed(metrics.RPC_SECONDS, getattr(command, "kind", ""), outcome, elapsed)
        return reply.unwrap()

    async def _call(self, command: Command) -> CommandReply:
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        body = command.model_dump_json().encode()
        try:
            confirm = await self._broker.publish(
                body,
                headers={PROOF_HEADER: command_proof(self._secret, body)},
                content_type="application/json",
                queue=self._command_queue,
                reply_to=self.reply_queue.name,
                correlation_id=correlation_id,
                expiration=self._timeout,
                mandatory=True,
            )
            if isinstance(getattr(confirm, "delivery", None), Basic.Return):
                raise Unavailable(
                    "the controller is not running (nobody listens on its command queue "
                    f"'{self._command_queue}'); start flame-controller and retry"
                )
            body = await asyncio.wait_for(future, self._timeout)
        except (AMQPError, ConnectionError) as exc:
            raise Unavailable(f"cannot reach RabbitMQ to send the command: {exc}") from exc
        except TimeoutError as exc:
            log.warning("controller rpc timed out", kind=getattr(command, "kind", "?"))
            raise Unavailable(
                f"the controller did not answer within {self._timeout:g} s; "
                "check that flame-controller is running and retry"
            ) from exc
        finally:
            self._pending.pop(correlation_id, None)
        return CommandReply.model_validate(body)
