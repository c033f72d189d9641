"""MQTT backend (aiomqtt 2.x / paho 2.x) on Flame's topic layout, with a Last-Will health topic.

Topics (reference §4.4), QoS 1:
- broadcast: `/flame/<job>/<channel>/<group>/BROADCAST/<sender role>/<sender id>`
  (carries data and the JOIN/LEAVE/BEAT frames)
- unicast:   `/flame/<job>/<channel>/<group>/UNICAST/<sender role>/<sender id>/<role>/<id>`
- health:    `/flame/<job>` with `<id>:online` on connect and the Last Will `<id>:offline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
import uuid
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from flame_common.datanames import without_credentials
from flame_common.logs import get_logger
from flame_common.tls import client_context
from flame_sdk.backends.base import Scope
from flame_sdk.backends.broker import BrokerBackend

log = get_logger(__name__)

CHUNK_SIZE = 1024 * 1024
SEND_WINDOW = 16
QOS = 1
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
CONNECT_TIMEOUT = 5.0


def parse_broker(broker: str) -> tuple[str, int]:
    """`host`, `host:port`, `mqtt://host:port` or `mqtts://host:port?cafile=PEM`, each optionally
    with `user:password@` before the host -> (host, port)."""
    parts = _split(broker)
    if parts.scheme not in ("mqtt", "tcp", "mqtts") or not parts.hostname:
        raise ValueError(
            "mqtt broker must look like [user:password@]host[:port], mqtt://… or "
            f"mqtts://…[?cafile=PEM], got {without_credentials(broker)!r}"
        )
    return parts.hostname, parts.port or (
        DEFAULT_TLS_PORT if parts.scheme == "mqtts" else DEFAULT_PORT
    )


def broker_login(broker: str) -> tuple[str | None, str | None]:
    """The (username, password) of the broker URL (the job's login), (None, None) without."""
    parts = _split(broker)
    if parts.username is None:
        return None, None
    return unquote(parts.username), unquote(parts.password or "")


def _split(broker: str) -> SplitResult:
    return urlsplit(broker if "://" in broker else f"mqtt://{broker}")


def broker_tls(broker: str) -> ssl.SSLContext | None:
    """The verifying TLS context of an `mqtts://` broker (trusting its `cafile`, else the
    system's CAs); None for plain MQTT."""
    parts = urlsplit(broker)
    if parts.scheme != "mqtts":
        return None
    cafile = dict(parse_qsl(parts.query)).get("cafile")
    return client_context(cafile)


def _check_part(what: str, value: str) -> str:
    if not value or any(c in value for c in "/+#"):
        raise ValueError(f"{what} {value!r} cannot be used in an MQTT topic (empty or has / + #)")
    return value


def health_topic(job_id: str) -> str:
    return f"/flame/{job_id}"


def _base(scope: Scope) -> str:
    return f"/flame/{scope.job_id}/{scope.channel}/{scope.group}"


class MQTTBackend(BrokerBackend):
    """One MQTT client per process; frames are chunked to `chunk_size` bytes per publish."""

    sort = "mqtt"
    transport_errors = (aiomqtt.MqttError, ConnectionError)

    def __init__(
        self,
        broker: str,
        job_id: str,
        end_id: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        send_window: int = SEND_WINDOW,
        heartbeat_interval: float = 2.0,
        liveness_timeout: float = 10.0,
        offline_grace: float = 1.0,
        keepalive: int = 10,
        **options: Any,
    ) -> None:
        self.host, self.port = parse_broker(broker)
        self.username, self.password = broker_login(broker)  # never logged
        self.tls = broker_tls(broker)
        _check_part("job id", job_id)
        _check_part("end id", end_id)
        super().__init__(
            job_id,
            end_id,
            chunk_size=chunk_size,
            send_window=send_window,
            heartbeat_interval=heartbeat_interval,
            liveness_timeout=liveness_timeout,
            **options,
        )
        self.offline_grace, self.keepalive = offline_grace, keepalive
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[None] | None = None  # done when the connection dropped
        self._identifier = f"{end_id}-{uuid.uuid4().hex[:8]}"  # one broker session per backend
        self._sessions = 0

    async def _open(self) -> None:
        """Connect; the session (subscriptions and QoS 1 messages for us) outlives a dropped
        connection by the outage bound, and the Last Will waits one liveness timeout, so a
        reconnection in time misses nothing and is not reported offline."""
        health = health_topic(self.job_id)
        will_properties = Properties(PacketTypes.WILLMESSAGE)
        will_properties.WillDelayInterval = math.ceil(self.liveness_timeout)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = math.ceil(self.outage_timeout)
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            tls_context=self.tls,
            identifier=self._identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(
                health, f"{self.end_id}:offline", qos=QOS, properties=will_properties
            ),
            keepalive=self.keepalive,
            clean_start=self._sessions == 0,
            properties=properties,
        )
        client.pending_calls_threshold = 4 * self.send_window  # our pipelining is deliberate
        operations, client.timeout = client.timeout, min(CONNECT_TIMEOUT, self.liveness_timeout)
        _fail_fast_before_connack(client)
        await client.__aenter__()
        client.timeout = operations
        self._client, self._sessions = client, self._sessions + 1
        self._lost = asyncio.get_running_loop().create_future()
        await client.subscribe(health, qos=QOS)
        self._reader = asyncio.create_task(self._read(client), name="flame-mqtt-reader")
        await client.publish(health, f"{self.end_id}:online", qos=QOS)

    async def _discard_transport(self) -> None:
        client, self._client = self._client, None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        await self._stop_reader()
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def _close_transport(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(health_topic(self.job_id), f"{self.end_id}:offline", qos=QOS)
        await self._stop_reader()
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)

    async def kill(self) -> None:
        """Test hook: drop the TCP connection abruptly, so the broker publishes our Last Will."""
        client, self._client = self._client, None
        await self._stop_reader()
        if client is not None:
            sock = client._client.socket()
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):  # consume aiomqtt's "unexpected disconnection"
                await asyncio.wait_for(asyncio.shield(client._disconnected), 2.0)
        self._states.clear()
        await self._shutdown()

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self._on_mqtt(message.topic.value, message.payload)
        except aiomqtt.MqttError as exc:
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            if client is self._client:
                self._transport_lost(exc)

    def _on_mqtt(self, topic: str, payload: Any) -> None:
        if not isinstance(payload, bytes | bytearray):
            log.warning("mqtt message without a byte payload dropped", topic=topic)
            return
        parts = topic.split("/")
        if len(parts) < 3 or parts[:3] != ["", "flame", self.job_id] or 3 < len(parts) < 8:
            log.warning("mqtt message on a foreign topic dropped", topic=topic)
            return
        if len(parts) == 3:
            self._on_health(bytes(payload))
            return
        state = self._states.get((parts[3], parts[4]))
        if state is None:  # a scope left a moment ago
            log.debug("mqtt message for a scope not joined dropped", topic=topic)
            return
        self._on_frame(state.scope, bytes(payload))

    def _on_health(self, payload: bytes) -> None:
        end_id, _, status = payload.decode(errors="replace").rpartition(":")
        if status == "offline" and end_id != self.end_id:
            self._on_peer_offline(end_id, self.offline_grace)

    async def _subscribe(self, scope: Scope) -> None:
        assert self._client is not None
        for what in ("channel", "group", "me", "other"):
            _check_part(what, getattr(scope, what))
        base = _base(scope)
        await self._client.subscribe(f"{base}/BROADCAST/{scope.other}/+", qos=QOS)
        await self._client.subscribe(
            f"{base}/UNICAST/{scope.other}/+/{scope.me}/{scope.end_id}", qos=QOS
        )

    async def _unsubscribe(self, scope: Scope) -> None:
        assert self._client is not None
        base = _base(scope)
        await self._client.unsubscribe(f"{base}/BROADCAST/{scope.other}/+")
        await self._client.unsubscribe(f"{base}/UNICAST/{scope.other}/+/{scope.me}/{scope.end_id}")

    async def _publish(self, scope: Scope, target: str | None, frame: bytes) -> None:
        client, lost = self._client, self._lost
        if client is None or lost is None:
            raise ConnectionError("mqtt backend is not connected")
        sender = f"{scope.me}/{scope.end_id}"
        if target is None:
            topic = f"{_base(scope)}/BROADCAST/{sender}"
        else:
            topic = f"{_base(scope)}/UNICAST/{sender}/{scope.other}/{_check_part('end id', target)}"
        # a publish in flight when the connection drops would wait for its PUBACK until
        # aiomqtt's timeout: end it with the connection
        publish = asyncio.ensure_future(client.publish(topic, frame, qos=QOS))
        await asyncio.wait((publish, lost), return_when=asyncio.FIRST_COMPLETED)
        if not publish.done():
            publish.cancel()
            raise ConnectionError("mqtt connection lost while publishing")
        publish.result()


def _fail_fast_before_connack(client: aiomqtt.Client) -> None:
    """Make a connection that drops before its CONNACK fail the connect at once: aiomqtt
    ignores that disconnection and waits for its timeout, so one attempt during an outage
    would cost the whole timeout (and peers may judge us gone meanwhile)."""
    paho = client._client  # aiomqtt 2 keeps its paho client and the CONNACK future here
    ignoring = paho.on_disconnect

    def on_disconnect(*args: Any) -> None:
        connected: asyncio.Future[None] = client._connected
        if not connected.done():
            connected.set_exception(aiomqtt.MqttError("connection closed before the CONNACK"))
        if ignoring is not None:
            ignoring(*args)

    paho.on_disconnect = on_disconnect
