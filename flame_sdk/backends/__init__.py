"""Channel backends: how the bytes of one channel travel (in-process, RabbitMQ, MQTT, P2P)."""

from __future__ import annotations

from typing import Any

from flame_common.extras import require
from flame_sdk.backends.base import Backend, Scope

SORTS = ("local", "rabbitmq", "mqtt", "p2p")


def create_backend(sort: str, broker: str, job_id: str, end_id: str, **options: Any) -> Backend:
    """Build the backend of `sort` for one end of a job; `broker` is the sort's broker address.

    `options` are passed to the adapter (e.g. `heartbeat_interval`, `liveness_timeout`,
    `chunk_size`); `broker` is ignored by `local`. `p2p` takes the broker of its membership
    side (an `amqp(s)://` URL: RabbitMQ, else MQTT) and passes the options it does not know on.
    """
    if sort == "local":
        from flame_sdk.backends.local import LocalBackend

        return LocalBackend(job_id, end_id, **options)
    if sort == "rabbitmq":
        from flame_sdk.backends.rabbitmq import RabbitMQBackend

        return RabbitMQBackend(broker, job_id, end_id, **options)
    if sort == "mqtt":
        require("mqtt", "the MQTT backend")
        from flame_sdk.backends.mqtt import MQTTBackend

        return MQTTBackend(broker, job_id, end_id, **options)
    if sort == "p2p":
        from flame_sdk.backends.p2p import P2PBackend

        return P2PBackend(broker, job_id, end_id, **options)
    raise ValueError(f"unknown backend sort {sort!r}; expected one of {', '.join(SORTS)}")


__all__ = ["SORTS", "Backend", "Scope", "create_backend"]
