"""RabbitMQ backend (aio-pika): a topic exchange per job and one queue per joined scope.

A scope's queue outlives a dropped connection by the outage bound (`x-expires`) and frames are
acknowledged only once handled, so what the broker had accepted for us before an outage (also a
frame cut off mid-delivery) is delivered again after the reconnection instead of being lost.
Only one consumer at a time may read it (an exclusive consumer, not an exclusive queue).

Every name it declares starts with `flame.data.<job>.` or is the exchange `flame.data.<job>`
(queues too: never server-named `amq.gen-*`; `flame_common.datanames`), so a per-job broker user
whose permissions match `data_resources(job)` can do all it needs and nothing else.

Routing keys (each part percent-escaped so dots and wildcards in names are harmless):
- unicast to an end:  `u.<channel>.<group>.<role>.<end>`
- broadcast by role:  `b.<channel>.<group>.<sender role>` (also carries JOIN/LEAVE/BEAT frames)
"""

from __future__ import annotations

import contextlib
import math
from typing import Any
from urllib.parse import quote

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import AMQPError, ChannelClosed
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.commands import Basic

from flame_common.datanames import exchange_name, queue_name
from flame_common.logs import get_logger
from flame_sdk.backends.base import Scope
from flame_sdk.backends.broker import BrokerBackend, Unroutable

log = get_logger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024  # well below RabbitMQ 4's 16 MiB default message limit
SEND_WINDOW = 4
PREFETCH = 64  # unacknowledged frames the broker may push to one queue's consumer
_DECLARE_ATTEMPTS = 3


def _part(name: str) -> str:
    return quote(name, safe="-_").replace(".", "%2E")


def unicast_key(channel: str, group: str, role: str, end_id: str) -> str:
    return ".".join(("u", _part(channel), _part(group), _part(role), _part(end_id)))


def broadcast_key(channel: str, group: str, role: str) -> str:
    return ".".join(("b", _part(channel), _part(group), _part(role)))


class RabbitMQBackend(BrokerBackend):
    """Frames travel as non-persistent messages on the job's exchange, published with confirms."""

    sort = "rabbitmq"
    transport_errors = (AMQPError, ConnectionError, ChannelInvalidStateError)

    def __init__(
        self,
        url: str,
        job_id: str,
        end_id: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        send_window: int = SEND_WINDOW,
        heartbeat_interval: float = 2.0,
        liveness_timeout: float = 10.0,
        **options: Any,
    ) -> None:
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"rabbitmq broker must be an amqp:// or amqps:// URL, got {url!r}")
        super().__init__(
            job_id,
            end_id,
            chunk_size=chunk_size,
            send_window=send_window,
            heartbeat_interval=heartbeat_interval,
            liveness_timeout=liveness_timeout,
            **options,
        )
        self.url = url
        self._connection: AbstractConnection | None = None
        self._pub: AbstractChannel | None = None  # publishing, with confirms
        self._sub: AbstractChannel | None = None  # consuming
        self._admin: AbstractChannel | None = None  # declarations; reopened after a failure
        self._exchange: AbstractExchange | None = None
        self._queues: dict[Scope, tuple[AbstractQueue, str]] = {}  # queue, consumer tag
        self._names: dict[Scope, str] = {}  # a scope keeps its queue across reconnections

    async def _open(self) -> None:
        self._connection = connection = await aio_pika.connect(self.url)
        connection.close_callbacks.add(self._on_connection_closed)
        self._pub = await connection.channel(publisher_confirms=True)
        self._sub = await connection.channel(publisher_confirms=False)
        await self._sub.set_qos(prefetch_count=PREFETCH)
        self._admin = await connection.channel(publisher_confirms=False)
        self._exchange = await self._declare_exchange(self._pub)

    def _on_connection_closed(self, sender: object, exc: BaseException | None = None) -> None:
        if sender is self._connection:  # not closed by us: reconnect
            self._transport_lost(exc)

    async def _close_transport(self) -> None:
        connection, self._connection = self._connection, None
        self._queues.clear()
        if connection is not None:
            await connection.close()

    async def _declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            exchange_name(self.job_id), aio_pika.ExchangeType.TOPIC, auto_delete=True
        )

    async def _subscribe(self, scope: Scope) -> None:
        assert self._admin is not None and self._sub is not None
        keys = [
            unicast_key(scope.channel, scope.group, scope.me, scope.end_id),
            broadcast_key(scope.channel, scope.group, scope.other),
        ]
        # The exchange auto-deletes when its last binding goes; a concurrent departure can remove
        # it between our declaration and our bind, so declare and bind again after a 404.
        for attempt in range(_DECLARE_ATTEMPTS):
            try:
                exchange = await self._declare_exchange(self._admin)
                queue = await self._admin.declare_queue(
                    self._names.setdefault(scope, queue_name(self.job_id)),
                    arguments={"x-expires": math.ceil(1000 * self.outage_timeout)},
                )
                for key in keys:
                    await queue.bind(exchange, key)
                break
            except ChannelClosed:
                if attempt == _DECLARE_ATTEMPTS - 1:
                    raise
                await self._admin.reopen()
        consumer = await self._sub.get_queue(queue.name, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._on_frame(scope, message.body)
            with contextlib.suppress(*self.transport_errors):  # unacknowledged: delivered again
                await message.ack()

        tag = await consumer.consume(on_message, exclusive=True)
        self._queues[scope] = (consumer, tag)

    async def _unsubscribe(self, scope: Scope) -> None:
        entry = self._queues.pop(scope, None)
        self._names.pop(scope, None)
        if entry is not None:
            queue, tag = entry
            await queue.cancel(tag)
            await queue.delete(if_unused=False, if_empty=False)

    async def _publish(self, scope: Scope, target: str | None, frame: bytes) -> None:
        assert self._exchange is not None
        if target is None:
            key = broadcast_key(scope.channel, scope.group, scope.me)
        else:
            key = unicast_key(scope.channel, scope.group, scope.other, target)
        message = aio_pika.Message(frame, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
        confirmation = await self._exchange.publish(message, routing_key=key, mandatory=True)
        if not isinstance(confirmation, Basic.Ack):  # returned: no queue is bound to `key`
            raise Unroutable(key)


__all__ = ["RabbitMQBackend", "broadcast_key", "exchange_name", "unicast_key"]
