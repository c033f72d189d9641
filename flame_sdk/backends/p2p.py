"""Peer-to-peer backend: membership over a broker backend, message payloads over direct TCP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from flame_common.logs import get_logger
from flame_sdk.backends.background import Background
from flame_sdk.backends.base import Backend, BrokerOutageError, Parts, Scope
from flame_sdk.backends.chunking import DEFAULT_MAX_MESSAGE, as_views
from flame_sdk.backends.dispatch import Dispatcher, Event, EventKind
from flame_sdk.backends.frames import FrameError, Header, Kind, decode

log = get_logger(__name__)

HOST_ENV = "FLAME_P2P_HOST"  # the address the listener binds (default 127.0.0.1)
ADVERTISE_ENV = "FLAME_P2P_ADVERTISE_HOST"  # the host peers connect to (default: the bind host)
DEFAULT_HOST = "127.0.0.1"
WILDCARDS = ("", "0.0.0.0", "::")

ENVELOPE = struct.Struct("!2sBxIQ")  # magic, kind, epoch, sequence
_U64 = struct.Struct("!Q")  # a message length; an acknowledged sequence number
_HELLO = struct.Struct("!4s32sH")  # magic, HMAC of nonce + header, header length
ENVELOPE_MAGIC = b"P2"
HELLO_MAGIC = b"FLP1"
NONCE_BYTES = 16
TOKEN_BYTES = 32
MAX_HEADER = 5 * 256 + 64  # a frames.Header with five strings of at most 255 bytes
MAX_ADDRESS = 1024  # bytes of an ADDR body
MAX_HANDSHAKES = 64  # connections not yet authenticated; more are refused at once
IO_PIECE = 1 << 20  # bytes per socket write (then drain) and per read
FINISHED_STREAMS = 4096  # epochs of departed peers remembered (a falsely expired peer resumes)
ACCEPTED = b"accepted"


class EnvelopeKind(IntEnum):
    DATA = 1
    ADDR = 2


class _Refused(Exception):
    """A connection to our listener that fails the handshake."""


@dataclass(frozen=True)
class Address:
    """Where an end's listener is reached."""

    host: str
    port: int


@dataclass
class _Outbound:
    """Messages of this end to one peer on one scope: sequence numbers and the direct stream."""

    epoch: int
    seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    address: Address | None = None
    token: bytes = b""
    reader: asyncio.StreamReader | None = None  # only acknowledgements come back
    writer: asyncio.StreamWriter | None = None
    retry_at: float = 0.0


@dataclass
class _Inbound:
    """Messages of one peer on one scope: the next sequence number and the early arrivals."""

    epoch: int
    expected: int = 0
    held: dict[int, bytearray | None] = field(default_factory=dict)  # None: refused
    held_bytes: int = 0
    gap_timer: asyncio.TimerHandle | None = None


ScopeKey = tuple[str, str]  # (channel, group)
PeerKey = tuple[str, str, str]  # (channel, group, peer end id)


def inner_sort(broker: str) -> str:
    """The broker backend carrying membership: `rabbitmq` for amqp(s):// URLs, else `mqtt`."""
    return "rabbitmq" if broker.startswith(("amqp://", "amqps://")) else "mqtt"


class P2PBackend(Backend):
    """Direct TCP streams between the ends of a job, a broker backend for everything else.

    The inner backend (`rabbitmq` for an `amqp(s)://` broker, else `mqtt`) keeps membership,
    liveness and the small frames. Each end listens on `host` (port `port`, 0: any) and announces
    its address and a random token to every peer it discovers, by a unicast over the broker.
    A sender opens one stream per (channel, group, peer) and proves the token: the listener
    sends a nonce, the sender HMAC-SHA256(token, nonce + HELLO frame header), the listener checks
    it in constant time, checks the header (job, joined scope, peer role, known peer) and proves
    the token back. A message goes over the stream (acknowledged by its sequence number) when
    one is up, else over the broker; a stream that breaks sends the message again over the
    broker. Every message carries the sender's stream epoch and a sequence number; receivers
    deliver in sequence, holding early ones until the gap fills (at most `reorder_timeout`
    seconds and `max_message_bytes` held, then the gap is skipped with a warning), and drop
    duplicates. Layout: flame_sdk/backends/README.md, "P2P layout".
    """

    sort = "p2p"

    def __init__(
        self,
        broker: str,
        job_id: str,
        end_id: str,
        *,
        host: str | None = None,
        port: int = 0,
        advertise_host: str | None = None,
        connect_timeout: float = 3.0,
        io_timeout: float = 30.0,
        retry_interval: float = 5.0,
        reorder_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        **broker_options: Any,
    ) -> None:
        super().__init__()
        from flame_sdk.backends import create_backend

        if min(connect_timeout, io_timeout, reorder_timeout) <= 0 or retry_interval < 0:
            raise ValueError("p2p timeouts must be positive (and retry_interval not negative)")
        self.job_id, self.end_id = job_id, end_id
        self.host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
        self.port = port
        self.advertise_host = advertise_host or os.environ.get(ADVERTISE_ENV) or self.host
        if self.advertise_host in WILDCARDS:
            raise ValueError(
                f"p2p listener binds {self.host!r}, which peers cannot connect to: set "
                f"advertise_host ({ADVERTISE_ENV}) to this machine's reachable address"
            )
        self.connect_timeout, self.io_timeout = connect_timeout, io_timeout
        self.retry_interval, self.reorder_timeout = retry_interval, reorder_timeout
        self.max_message_bytes = max_message_bytes
        self.inner = create_backend(
            inner_sort(broker),
            broker,
            job_id,
            end_id,
            max_message_bytes=max_message_bytes + ENVELOPE.size,
            **broker_options,
        )
        self.inner.bind(self._inner_join, self._inner_leave, self._inner_message)
        self.address: Address | None = None  # what this end announces, once listening
        self._token = secrets.token_bytes(TOKEN_BYTES)
        self._server: asyncio.Server | None = None
        self._dispatcher = Dispatcher(self)
        self._scopes: dict[ScopeKey, Scope] = {}
        self._peers: dict[ScopeKey, set[str]] = {}
        self._outbound: dict[PeerKey, _Outbound] = {}
        self._inbound: dict[PeerKey, _Inbound] = {}
        self._finished: OrderedDict[tuple[PeerKey, int], int] = OrderedDict()
        self._streams: dict[PeerKey, set[asyncio.StreamWriter]] = {}  # accepted, authenticated
        self._handshakes: set[asyncio.StreamWriter] = set()
        self._background = Background("p2p")
        self._connect_lock = asyncio.Lock()
        self._connected = False

    @property
    def failure(self) -> BrokerOutageError | None:
        """The inner broker backend's `BrokerOutageError`, once it gave up reconnecting."""
        return self.inner.failure

    @failure.setter
    def failure(self, value: BrokerOutageError | None) -> None:
        """Only `Backend.__init__` sets it (to None): the inner backend holds the failure."""

    # -- Backend --------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._connect_lock:
            if self._connected:
                return
            self._dispatcher.start()
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=IO_PIECE
            )
            port = self._server.sockets[0].getsockname()[1]
            self.address = Address(self.advertise_host, port)
            try:
                await self.inner.connect()
            except BaseException:
                await self._stop_listener()
                await self._dispatcher.stop()
                raise
            self._connected = True
            log.info("p2p listening", end=self.end_id, host=self.host, port=port)

    async def join(self, scope: Scope) -> None:
        self._check_scope(scope)
        await self.connect()
        key = (scope.channel, scope.group)
        current = self._scopes.get(key)
        if current is not None:
            if current != scope:
                raise ValueError(f"already joined channel {scope.channel!r} group {scope.group!r}")
            return
        self._scopes[key], self._peers[key] = scope, set()
        try:
            await self.inner.join(scope)
        except BaseException:
            self._forget_scope(key)
            raise

    async def leave(self, scope: Scope) -> None:
        key = (scope.channel, scope.group)
        if self._scopes.get(key) != scope:
            return
        self._forget_scope(key)
        await self.inner.leave(scope)

    async def send(self, scope: Scope, end_id: str, data: Parts) -> None:
        views, size = self._checked(scope, data)
        await self._send(scope, end_id, views, size)

    async def broadcast(self, scope: Scope, data: Parts) -> None:
        views, size = self._checked(scope, data)
        peers = sorted(self._peers.get((scope.channel, scope.group), ()))
        await asyncio.gather(*(self._send(scope, peer, views, size) for peer in peers))

    async def close(self) -> None:
        if not self._connected:
            return
        for key in list(self._scopes):
            self._forget_scope(key)
        self._connected = False
        await self._stop_listener()
        await self.inner.close()
        await self._shutdown()

    async def kill(self) -> None:
        """Test hook simulating a crash: drop every socket and the broker link, unannounced."""
        for key in list(self._scopes):
            self._forget_scope(key)
        self._connected = False
        await self._stop_listener()
        await self.inner.kill()  # type: ignore[attr-defined]
        await self._shutdown()

    def reachable(self, scope: Scope, end_id: str) -> Address | None:
        """Where the peer announced its listener on `scope`; None until it did (meanwhile the
        payloads to it go through the broker)."""
        out = self._outbound.get((scope.channel, scope.group, end_id))
        return None if out is None else out.address

    # -- the inner broker backend's events --------------------------------------------------
    async def _inner_join(self, scope: Scope, peer: str) -> None:
        key = (scope.channel, scope.group)
        if self._scopes.get(key) != scope:
            return
        self._peers[key].add(peer)
        self._dispatcher.post(Event(EventKind.JOIN, scope, peer))
        self._spawn(self._announce(scope, peer))

    async def _inner_leave(self, scope: Scope, peer: str) -> None:
        key = (scope.channel, scope.group)
        if self._scopes.get(key) != scope or peer not in self._peers[key]:
            return
        self._peers[key].discard(peer)
        self._forget_peer(scope, peer, deliver=True)
        self._dispatcher.post(Event(EventKind.LEAVE, scope, peer))

    async def _inner_message(self, scope: Scope, peer: str, data: bytes | bytearray) -> None:
        if self._scopes.get((scope.channel, scope.group)) != scope:
            return
        try:
            magic, kind, epoch, seq = ENVELOPE.unpack_from(data)
            if magic != ENVELOPE_MAGIC:
                raise FrameError("bad envelope magic")
            if kind == EnvelopeKind.ADDR:
                self._on_address(scope, peer, bytes(data[ENVELOPE.size :]))
                return
            if kind != EnvelopeKind.DATA:
                raise FrameError(f"unknown envelope kind {kind}")
        except (struct.error, FrameError) as exc:
            log.warning("p2p broker message dropped", reason=str(exc), peer=peer)
            return
        body = data if isinstance(data, bytearray) else bytearray(data)
        del body[: ENVELOPE.size]  # O(1) at the front of a bytearray; keeps its alignment
        self._accept(scope, peer, epoch, seq, body)

    async def _announce(self, scope: Scope, peer: str) -> None:
        """Tell a peer (over the broker: only job members read it) where and how to reach us."""
        assert self.address is not None
        body = json.dumps(
            {"host": self.address.host, "port": self.address.port, "token": self._token.hex()}
        ).encode()
        envelope = ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.ADDR, 0, 0)
        try:
            await self.inner.send(scope, peer, [envelope, body])
        except Exception as exc:
            log.warning("p2p address not announced", peer=peer, error=repr(exc))

    def _on_address(self, scope: Scope, peer: str, body: bytes) -> None:
        try:
            if len(body) > MAX_ADDRESS:
                raise ValueError(f"{len(body)} bytes")
            fields = json.loads(body)
            host, port, token = fields["host"], fields["port"], bytes.fromhex(fields["token"])
            if not isinstance(host, str) or not 0 < len(host) <= 255:
                raise ValueError("bad host")
            if not isinstance(port, int) or not 0 < port < 65536 or len(token) != TOKEN_BYTES:
                raise ValueError("bad port or token")
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("p2p address dropped", peer=peer, reason=repr(exc))
            return
        out = self._outbound_for(scope, peer)
        address = Address(host, port)
        if (out.address, out.token) != (address, token):
            self._drop_stream(out)
            out.address, out.token, out.retry_at = address, token, 0.0

    # -- sending --------------------------------------------------------------------------
    def _checked(self, scope: Scope, data: Parts) -> tuple[list[memoryview], int]:
        self._check_scope(scope)
        if self._scopes.get((scope.channel, scope.group)) != scope:
            raise RuntimeError(f"channel {scope.channel!r} group {scope.group!r} is not joined")
        if self.failure is not None:
            raise self.failure
        views = as_views(data)
        size = sum(len(v) for v in views)
        if size > self.max_message_bytes:
            raise ValueError(f"message of {size} bytes exceeds {self.max_message_bytes}")
        return views, size

    async def _send(self, scope: Scope, peer: str, views: list[memoryview], size: int) -> None:
        """Queue the message on the peer's stream (in call order) and wait for it to be sent.
        The sending runs in its own task: a cancelled caller cannot leave a stream mid-message
        or a sequence number unused."""
        out = self._outbound_for(scope, peer)
        await asyncio.shield(self._spawn(self._transmit(scope, peer, out, views, size)))

    async def _transmit(
        self, scope: Scope, peer: str, out: _Outbound, views: list[memoryview], size: int
    ) -> None:
        async with out.lock:
            seq, out.seq = out.seq, out.seq + 1
            if out.reader is not None and out.reader.at_eof():
                self._drop_stream(out)  # the peer closed it (or died) since the last message
            current = self._outbound.get((scope.channel, scope.group, peer)) is out
            ready = out.address is not None and time.monotonic() >= out.retry_at
            if out.writer is None and current and ready:  # (not for a peer that left meanwhile)
                await self._open_stream(scope, peer, out)
            if out.reader is not None and out.writer is not None:
                try:
                    await self._write(out.reader, out.writer, out.epoch, seq, views, size)
                    return
                except (OSError, TimeoutError, EOFError) as exc:
                    log.warning(
                        "p2p stream broken; the message goes through the broker",
                        peer=peer,
                        channel=scope.channel,
                        error=repr(exc),
                    )
                    self._drop_stream(out)
                    out.retry_at = time.monotonic() + self.retry_interval
            envelope = ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.DATA, out.epoch, seq)
            await self.inner.send(scope, peer, [envelope, *views])

    async def _write(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        epoch: int,
        seq: int,
        views: list[memoryview],
        size: int,
    ) -> None:
        """One message on a stream, drained piece by piece, then the receiver's acknowledgement
        (its sequence number); each wait bounded by `io_timeout`. A failure aborts the stream
        (the receiver drops what it got of the message) and the caller sends it again over the
        broker (the receiver drops it if it had it after all)."""
        try:
            writer.write(ENVELOPE.pack(ENVELOPE_MAGIC, EnvelopeKind.DATA, epoch, seq))
            writer.write(_U64.pack(size))
            for view in views:
                for start in range(0, len(view), IO_PIECE):
                    writer.write(view[start : start + IO_PIECE])
                    async with asyncio.timeout(self.io_timeout):
                        await writer.drain()
            async with asyncio.timeout(self.io_timeout):
                await writer.drain()
                ack = await reader.readexactly(_U64.size)
            if ack != _U64.pack(seq):
                raise ConnectionError(f"p2p acknowledgement {ack.hex()} for message {seq}")
        except BaseException:
            writer.transport.abort()
            raise

    async def _open_stream(self, scope: Scope, peer: str, out: _Outbound) -> None:
        """Connect to the peer's listener and authenticate, within `connect_timeout`; on failure
        the peer is served over the broker for `retry_interval` seconds."""
        assert out.address is not None
        address, token = out.address, out.token
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(address.host, address.port)
                nonce = await reader.readexactly(NONCE_BYTES)
                header = Header(
                    Kind.HELLO, scope.job_id, scope.channel, scope.group, scope.me, scope.end_id
                ).encode()
                mac = _mac(token, nonce + header)
                writer.write(_HELLO.pack(HELLO_MAGIC, mac, len(header)) + header)
                proof = await reader.readexactly(len(mac))
                if not hmac.compare_digest(proof, _mac(token, nonce + ACCEPTED)):
                    raise ConnectionRefusedError("the listener did not prove the token")
        except (OSError, TimeoutError, EOFError) as exc:
            log.info(
                "p2p stream not opened; using the broker",
                peer=peer,
                host=address.host,
                port=address.port,
                error=repr(exc),
            )
            if writer is not None:
                writer.transport.abort()
            out.retry_at = time.monotonic() + self.retry_interval
            return
        out.reader, out.writer = reader, writer
        log.info("p2p stream open", peer=peer, channel=scope.channel)

    def _drop_stream(self, out: _Outbound) -> None:
        writer = out.writer
        out.reader, out.writer = None, None
        if writer is not None:
            writer.transport.abort()

    # -- receiving ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection to our listener: the handshake, then the peer's messages."""
        origin = writer.get_extra_info("peername")
        if len(self._handshakes) >= MAX_HANDSHAKES:
            log.warning("p2p connection refused", origin=origin, reason="too many handshakes")
            writer.transport.abort()
            return
        self._handshakes.add(writer)
        try:
            scope, peer = await self._handshake(reader, writer)
        except (_Refused, FrameError, OSError, TimeoutError, EOFError) as exc:
            log.warning("p2p connection refused", origin=origin, reason=str(exc) or repr(exc))
            writer.transport.abort()
            return
        finally:
            self._handshakes.discard(writer)
        key = (scope.channel, scope.group, peer)
        self._streams.setdefault(key, set()).add(writer)
        try:
            await self._read_messages(scope, peer, reader, writer)
        except (FrameError, OSError, TimeoutError, EOFError) as exc:
            log.warning("p2p stream dropped", peer=peer, channel=scope.channel, reason=repr(exc))
        finally:
            streams = self._streams.get(key, set())
            streams.discard(writer)
            if not streams:
                self._streams.pop(key, None)
            writer.transport.abort()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Scope, str]:
        async with asyncio.timeout(self.connect_timeout):
            nonce = secrets.token_bytes(NONCE_BYTES)
            writer.write(nonce)
            magic, mac, length = _HELLO.unpack(await reader.readexactly(_HELLO.size))
            if magic != HELLO_MAGIC or length > MAX_HEADER:
                raise _Refused("not a p2p handshake")
            raw = await reader.readexactly(length)
            if not hmac.compare_digest(mac, _mac(self._token, nonce + raw)):
                raise _Refused("bad token")
            header, rest = decode(raw)
            scope = self._scopes.get((header.channel, header.group))
            if header.kind is not Kind.HELLO or len(rest) or header.job_id != self.job_id:
                raise _Refused("not a HELLO of this job")
            if scope is None or header.role != scope.other:
                raise _Refused(f"no joined scope for {header.channel}/{header.group}")
            if header.sender not in self._peers[(scope.channel, scope.group)]:
                raise _Refused(f"{header.sender} is not a known peer")
            writer.write(_mac(self._token, nonce + ACCEPTED))
            await writer.drain()
        return scope, header.sender

    async def _read_messages(
        self, scope: Scope, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read messages until the stream ends, acknowledging each; the body of one is read as
        it comes (memory follows the bytes received), each read within `io_timeout`."""
        while True:
            try:
                head = await reader.readexactly(ENVELOPE.size + _U64.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                return  # closed between two messages
            magic, kind, epoch, seq = ENVELOPE.unpack_from(head)
            (size,) = _U64.unpack_from(head, ENVELOPE.size)
            if magic != ENVELOPE_MAGIC or kind != EnvelopeKind.DATA:
                raise FrameError("bad message envelope")
            if size > self.max_message_bytes:
                self._accept(scope, peer, epoch, seq, None)  # its number is used up
                raise FrameError(f"message of {size} bytes exceeds {self.max_message_bytes}")
            body = bytearray()
            while len(body) < size:
                async with asyncio.timeout(self.io_timeout):
                    piece = await reader.read(min(IO_PIECE, size - len(body)))
                if not piece:
                    raise FrameError(f"stream ended {size - len(body)} bytes before a message end")
                body += piece
            writer.write(_U64.pack(seq))
            self._accept(scope, peer, epoch, seq, body)

    def _accept(
        self, scope: Scope, peer: str, epoch: int, seq: int, body: bytearray | None
    ) -> None:
        """Deliver a message of `peer` in its sequence (see the class docstring); None: a
        message refused, whose turn passes without a delivery."""
        if self._scopes.get((scope.channel, scope.group)) != scope:
            return  # left while the message was on its way
        key = (scope.channel, scope.group, peer)
        state = self._inbound.get(key)
        if state is None or state.epoch != epoch:
            if (key, epoch) in self._finished and state is not None:
                log.warning("p2p message of an earlier stream dropped", peer=peer, seq=seq)
                return
            if state is not None:
                self._finish(scope, peer, state)
            state = _Inbound(epoch, self._finished.pop((key, epoch), 0))
            self._inbound[key] = state
        if seq < state.expected or seq in state.held:
            return  # a duplicate: sent again over the broker after its stream broke
        if seq > state.expected:
            state.held[seq] = body
            state.held_bytes += len(body or b"")
            if state.held_bytes > self.max_message_bytes:
                log.warning("p2p reorder buffer full; skipping lost messages", peer=peer)
                self._skip_gap(scope, peer, state)
            elif state.gap_timer is None:
                state.gap_timer = asyncio.get_running_loop().call_later(
                    self.reorder_timeout, self._gap_expired, scope, peer, state
                )
            return
        self._post(scope, peer, body)
        state.expected += 1
        self._release(scope, peer, state)

    def _release(self, scope: Scope, peer: str, state: _Inbound) -> None:
        """Deliver the held messages that are next in sequence."""
        while state.expected in state.held:
            body = state.held.pop(state.expected)
            state.held_bytes -= len(body or b"")
            self._post(scope, peer, body)
            state.expected += 1
        if not state.held and state.gap_timer is not None:
            state.gap_timer.cancel()
            state.gap_timer = None

    def _skip_gap(self, scope: Scope, peer: str, state: _Inbound) -> None:
        if state.held:
            first = min(state.held)
            lost = first - state.expected
            log.warning("p2p messages lost", peer=peer, channel=scope.channel, count=lost)
            state.expected = first
        self._release(scope, peer, state)

    def _gap_expired(self, scope: Scope, peer: str, state: _Inbound) -> None:
        state.gap_timer = None
        if self._inbound.get((scope.channel, scope.group, peer)) is state:
            self._skip_gap(scope, peer, state)

    def _finish(self, scope: Scope, peer: str, state: _Inbound) -> None:
        """A peer's stream ends: deliver what it held, remember where it stopped."""
        while state.held:
            self._skip_gap(scope, peer, state)
        self._finished[((scope.channel, scope.group, peer), state.epoch)] = state.expected
        while len(self._finished) > FINISHED_STREAMS:
            self._finished.popitem(last=False)

    def _post(self, scope: Scope, peer: str, body: bytearray | None) -> None:
        if body is not None:
            self._dispatcher.post(Event(EventKind.MESSAGE, scope, peer, body))

    # -- bookkeeping ----------------------------------------------------------------------
    def _outbound_for(self, scope: Scope, peer: str) -> _Outbound:
        key = (scope.channel, scope.group, peer)
        out = self._outbound.get(key)
        if out is None:
            out = self._outbound[key] = _Outbound(secrets.randbits(32))
        return out

    def _forget_peer(self, scope: Scope, peer: str, deliver: bool) -> None:
        """Close the streams to and from a peer; `deliver` what it left (it departed, we stay)."""
        key = (scope.channel, scope.group, peer)
        out = self._outbound.pop(key, None)
        if out is not None:
            self._drop_stream(out)
        for writer in self._streams.pop(key, set()):
            writer.transport.abort()
        state = self._inbound.pop(key, None)
        if state is not None and deliver:
            self._finish(scope, peer, state)
        elif state is not None and state.gap_timer is not None:
            state.gap_timer.cancel()

    def _forget_scope(self, key: ScopeKey) -> None:
        scope = self._scopes.pop(key)
        peers = self._peers.pop(key, set())
        known = {k[2] for k in (*self._outbound, *self._inbound, *self._streams) if k[:2] == key}
        for peer in peers | known:
            self._forget_peer(scope, peer, deliver=False)

    async def _stop_listener(self) -> None:
        server, self._server = self._server, None
        for writer in list(self._handshakes):
            writer.transport.abort()
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.connect_timeout):
                    await server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._background.spawn(coro)

    async def _shutdown(self) -> None:
        await self._background.cancel()
        await self._dispatcher.stop()

    def _check_scope(self, scope: Scope) -> None:
        if scope.job_id != self.job_id or scope.end_id != self.end_id:
            raise ValueError(
                f"scope {scope} does not belong to this backend (job {self.job_id!r}, "
                f"end {self.end_id!r})"
            )


def _mac(token: bytes, message: bytes) -> bytes:
    return hmac.new(token, message, hashlib.sha256).digest()


__all__ = ["Address", "P2PBackend", "inner_sort"]
