"""Health probes of `flame up|status`: RabbitMQ handshake, HTTP answer, queue consumers."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from flame_common.busnames import names
from flame_common.embedded import port_open
from flame_common.settings import FlameSettings
from flame_common.tls import client_context

READY_QUEUES = ("notifier", "deployer.default")  # besides the controller's command queue


def rabbit_answers(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    if not port_open(parts.hostname or "127.0.0.1", port, timeout=1.0):
        return False
    import aio_pika

    async def _probe() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(_probe())
        return True
    except Exception:
        return False


def consumers_ready(settings: FlameSettings) -> bool:
    """True once the controller, notifier and deployer consume their queues."""
    import aio_pika

    queues = [names(settings).command_queue, *(names(settings).queue(q) for q in READY_QUEUES)]

    async def _probe() -> bool:
        connection = await aio_pika.connect(settings.rabbit_url, timeout=5)
        async with connection:
            for queue in queues:
                channel = await connection.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    return False
                if not declared.declaration_result.consumer_count:
                    return False
        return True

    try:
        return asyncio.run(_probe())
    except Exception:
        return False


def http_answers(url: str, ca_file: str = "") -> bool:
    """The apiserver answers at `url` (an https one with a certificate `ca_file` verifies)."""
    import httpx

    try:
        httpx.get(url, timeout=1.0, verify=client_context(ca_file or None))
        return True
    except httpx.HTTPError:
        return False
