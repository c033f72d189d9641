"""The protocol shared by the broker backends: discovery, heartbeats, liveness and chunked sends.

A subclass only moves frames: `_open/_close_transport` manage the connection, `_subscribe/
_unsubscribe` make one scope reachable, `_publish` sends one frame to an end (or to every end of
the other role when `target` is None; `Unroutable` when the broker has no queue for it) and
`_on_frame` is fed every frame received for a scope. A subclass reports a dropped connection
with `_transport_lost`; this class then reconnects (bounded by `outage_timeout`), subscribes
every scope again, announces them (JOIN) and publishes again every frame whose publish failed.
Payloads for peers on this host travel through shared memory (`shm.py`), only a handle through
the broker.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import random
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from flame_common.logs import get_logger
from flame_sdk.backends.background import Background
from flame_sdk.backends.base import Backend, BrokerOutageError, Scope
from flame_sdk.backends.chunking import (
    DEFAULT_MAX_MESSAGE,
    Parts,
    Reassembler,
    ReassemblyLimits,
    as_views,
    split_parts,
)
from flame_sdk.backends.dispatch import Dispatcher, Event, EventKind
from flame_sdk.backends.frames import FrameError, Header, Kind, decode
from flame_sdk.backends.shm import DEFAULT_THRESHOLD, MAX_DOMAIN, SegmentError, SegmentStore
from flame_sdk.backends.shm import default_dir as default_shm_dir

log = get_logger(__name__)

ScopeKey = tuple[str, str]  # (channel, group)

RECONNECT_DELAYS = (0.05, 1.0)  # first and longest pause between reconnection attempts
UNROUTABLE_RETRY = (0.02, 0.5)  # the same, between publishes of a frame its receiver missed
MAX_OUTAGE_TIMEOUT = 24 * 3600.0  # the longest outage bound (a RabbitMQ queue waits as long)
THREADED_WRITE = 4 * 1024 * 1024  # segments this large are written off the event loop


class Unroutable(Exception):
    """The broker had no queue for a frame: its receiver is not subscribed (yet, or any more)."""


@dataclass
class _ScopeState:
    scope: Scope
    reassembler: Reassembler
    peers: dict[str, float] = field(default_factory=dict)  # end id -> liveness deadline
    domains: dict[str, str] = field(default_factory=dict)  # end id -> its shared-memory domain
    beating: asyncio.Task[None] | None = None


class BrokerBackend(Backend):
    """Everything above raw frame transport; one instance per (process, backend sort)."""

    def __init__(
        self,
        job_id: str,
        end_id: str,
        *,
        chunk_size: int,
        send_window: int,
        heartbeat_interval: float,
        liveness_timeout: float,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        outage_timeout: float = 60.0,
        shared_memory: bool = True,
        shm_dir: str | None = None,
        shm_threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        super().__init__()
        if chunk_size < 1 or send_window < 1:
            raise ValueError("chunk_size and send_window must be positive")
        if not 0 < heartbeat_interval < liveness_timeout:
            raise ValueError("need 0 < heartbeat_interval < liveness_timeout")
        if not 0 < outage_timeout <= MAX_OUTAGE_TIMEOUT:  # NaN fails too
            raise ValueError(
                f"outage_timeout (hyperparameter brokerOutageTimeout) must be in "
                f"(0, {MAX_OUTAGE_TIMEOUT:g}] seconds, got {outage_timeout!r}"
            )
        self.outage_timeout = outage_timeout
        self.job_id, self.end_id = job_id, end_id
        self.chunk_size, self.send_window = chunk_size, send_window
        self.heartbeat_interval, self.liveness_timeout = heartbeat_interval, liveness_timeout
        self.max_message_bytes = max_message_bytes
        self._states: dict[ScopeKey, _ScopeState] = {}
        self._dispatcher = Dispatcher(self)
        self._ids = itertools.count(random.getrandbits(48))
        self._send_locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self._background = Background("backend")
        self._ticker: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._connected = False
        self._up = asyncio.Event()  # set while the transport works (and once we gave up)
        self._generation = 0  # transports opened so far: errors of an older one are stale
        self._reconnecting: asyncio.Task[None] | None = None
        # a handle may wait for the sender's outage, then in the receiver's queue for its own
        self.shm: SegmentStore | None = (
            SegmentStore.open(
                shm_dir or default_shm_dir(),
                expiry_seconds=2 * outage_timeout + liveness_timeout + 1,
                threshold=shm_threshold,
            )
            if shared_memory
            else None
        )
        domain = None if self.shm is None else self.shm.domain
        self._domain = b"" if domain is None else domain.encode()

    # -- transport hooks ------------------------------------------------------------------
    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close_transport(self) -> None: ...

    async def _discard_transport(self) -> None:
        """Drop a failed transport before reconnecting (no goodbye needed; default: close)."""
        await self._close_transport()

    @abc.abstractmethod
    async def _subscribe(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def _unsubscribe(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def _publish(self, scope: Scope, target: str | None, frame: bytes) -> None: ...

    transport_errors: tuple[type[BaseException], ...] = (ConnectionError,)
    """What `_publish` raises when the connection is gone (then reconnect and publish again)."""

    # -- Backend --------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._connect_lock:
            if self._connected:
                return
            await self._open()
            self._dispatcher.start()
            self._ticker = asyncio.create_task(self._tick(), name=f"flame-{self.sort}-liveness")
            self._connected = True
            self._up.set()
            if self.shm is not None:
                self.shm.sweep()

    async def join(self, scope: Scope) -> None:
        self._check_scope(scope)
        await self.connect()
        key = (scope.channel, scope.group)
        current = self._states.get(key)
        if current is not None:
            if current.scope != scope:
                raise ValueError(f"already joined channel {scope.channel!r} group {scope.group!r}")
            return
        self._states[key] = _ScopeState(
            scope, Reassembler(ReassemblyLimits.for_message(self.max_message_bytes))
        )
        try:
            await self._subscribe(scope)
            await self._control(scope, Kind.JOIN)
        except BaseException:
            self._states.pop(key, None)
            raise

    async def leave(self, scope: Scope) -> None:
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            return
        del self._states[(scope.channel, scope.group)]
        if state.beating is not None:
            state.beating.cancel()
        if not self._up.is_set() or self.failure is not None:
            return  # the broker is away: peers see us go through liveness
        try:
            with contextlib.suppress(Unroutable):  # nobody left to tell
                await self._publish(scope, None, _header(scope, Kind.LEAVE).encode())
            await self._unsubscribe(scope)
        except Exception as exc:
            log.warning("leave incomplete", channel=scope.channel, error=repr(exc))

    async def send(self, scope: Scope, end_id: str, data: Parts) -> None:
        await self.multicast(scope, [end_id], data)

    async def broadcast(self, scope: Scope, data: Parts) -> None:
        await self._send_data(scope, None, data)

    async def multicast(self, scope: Scope, end_ids: Sequence[str], data: Parts) -> None:
        """Peers on this host share one shared-memory copy; the others get broker sends."""
        views, size = self._checked(scope, data)
        shm, domains = self.shm, self._states[(scope.channel, scope.group)].domains
        local = [e for e in end_ids if shm is not None and shm.usable_for(size, domains.get(e))]
        served = await self._send_shared(scope, local, views, size) if local else []
        for end_id in end_ids:
            if end_id not in served:
                await self._send_data(scope, end_id, views)

    async def close(self) -> None:
        if not self._connected:
            return
        for state in list(self._states.values()):
            await self.leave(state.scope)
        await self._shutdown()
        await self._close_transport()

    async def kill(self) -> None:
        """Test hook simulating a crash: drop the connection without announcing departure."""
        self._states.clear()
        await self._shutdown()
        await self._close_transport()

    # -- receiving ------------------------------------------------------------------------
    def _on_frame(self, scope: Scope, body: bytes) -> None:
        """Handle one frame received for `scope`; bad or foreign frames are logged and dropped."""
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            return
        try:
            header, payload = decode(body)
            _check_origin(scope, header)
        except FrameError as exc:
            log.warning("frame dropped", reason=str(exc), channel=scope.channel, end=scope.end_id)
            return
        peer = header.sender
        if peer == scope.end_id:
            return
        if header.kind is Kind.LEAVE:
            if peer in state.peers:
                self._drop_peer(state, peer)
            return
        discovered = peer not in state.peers
        state.peers[peer] = time.monotonic() + self.liveness_timeout
        if discovered:
            self._dispatcher.post(Event(EventKind.JOIN, scope, peer))
        if header.kind in (Kind.JOIN, Kind.HELLO):
            self._note_domain(state, peer, payload)
        if header.kind is Kind.JOIN:
            self._spawn(self._control(scope, Kind.HELLO, peer))
        elif header.kind is Kind.SHM:
            self._take_shared(state, header, payload)
        elif header.kind is Kind.DATA:
            try:
                data = state.reassembler.add(header, payload)
            except FrameError as exc:
                log.warning("message dropped", reason=str(exc), channel=scope.channel, peer=peer)
                return
            if data is not None:
                self._dispatcher.post(Event(EventKind.MESSAGE, scope, peer, data))

    def _note_domain(self, state: _ScopeState, peer: str, payload: memoryview) -> None:
        """A JOIN/HELLO carries its sender's shared-memory domain (empty: none)."""
        if 0 < len(payload) <= MAX_DOMAIN:
            state.domains[peer] = str(payload, "ascii", "replace")
        else:
            state.domains.pop(peer, None)

    def _take_shared(self, state: _ScopeState, header: Header, payload: memoryview) -> None:
        """A handle: read the segment it names (once, duplicates dropped) and deliver it."""
        scope, peer = state.scope, header.sender
        if self.shm is None or self.shm.domain is None:
            log.warning("message dropped", reason="shared memory is off", peer=peer)
            return
        if header.total > self.max_message_bytes:
            log.warning("message dropped", reason=f"{header.total} bytes", peer=peer)
            return
        if not state.reassembler.claim(peer, header.message_id):
            return
        try:
            data = self.shm.take(str(payload, "ascii", "replace"), header.total)
        except SegmentError as exc:
            log.warning("message dropped", reason=str(exc), channel=scope.channel, peer=peer)
            return
        self._dispatcher.post(Event(EventKind.MESSAGE, scope, peer, data))

    def _on_peer_offline(self, end_id: str, grace: float) -> None:
        """A peer is known to be gone: let it expire within `grace` seconds in every scope."""
        deadline = time.monotonic() + grace
        for state in self._states.values():
            if end_id in state.peers:
                state.peers[end_id] = min(state.peers[end_id], deadline)

    def _drop_peer(self, state: _ScopeState, peer: str) -> None:
        del state.peers[peer]
        state.domains.pop(peer, None)
        state.reassembler.forget(peer)
        self._dispatcher.post(Event(EventKind.LEAVE, state.scope, peer))

    # -- sending --------------------------------------------------------------------------
    def _checked(self, scope: Scope, data: Parts) -> tuple[list[memoryview], int]:
        """The payload's views and size, after checking the scope is joined and the size
        allowed."""
        self._check_scope(scope)
        state = self._states.get((scope.channel, scope.group))
        if state is None or state.scope != scope:
            raise RuntimeError(f"channel {scope.channel!r} group {scope.group!r} is not joined")
        views = as_views(data)
        size = sum(len(v) for v in views)
        if size > self.max_message_bytes:
            raise ValueError(f"message of {size} bytes exceeds {self.max_message_bytes}")
        return views, size

    async def _send_shared(
        self, scope: Scope, targets: list[str], views: list[memoryview], size: int
    ) -> list[str]:
        """Write the payload once, link it per target and publish the handles; returns the
        targets served this way ([] when the segment could not be written). The targets'
        send locks are taken first (sorted: no deadlock between multicasts), so concurrent
        sends to one end keep their call order across the write."""
        assert self.shm is not None
        async with contextlib.AsyncExitStack() as held:
            for target in sorted(targets):
                await held.enter_async_context(self._lock(scope, target))
            try:
                if size >= THREADED_WRITE:
                    names = await asyncio.to_thread(self.shm.write, views, len(targets))
                else:
                    names = self.shm.write(views, len(targets))
            except OSError as exc:
                log.warning("shared memory write failed; using the broker", error=str(exc))
                return []
            header = _header(scope, Kind.SHM, next(self._ids) & 0xFFFF_FFFF_FFFF_FFFF, total=size)
            for n, (target, name) in enumerate(zip(targets, names, strict=True)):
                try:
                    if not await self._deliver(scope, target, header.encode() + name.encode()):
                        self.shm.discard([name])  # its receiver is gone
                except BaseException:
                    self.shm.discard(names[n:])
                    raise
        return targets

    def _lock(self, scope: Scope, target: str | None) -> asyncio.Lock:
        """The lock that keeps sends to one end (or broadcasts) of a scope in call order."""
        return self._send_locks.setdefault((scope.channel, scope.group, target), asyncio.Lock())

    async def _send_data(self, scope: Scope, target: str | None, data: Parts) -> None:
        views, size = self._checked(scope, data)
        chunks = split_parts(views, self.chunk_size)
        message_id = next(self._ids) & 0xFFFF_FFFF_FFFF_FFFF
        async with self._lock(scope, target):
            pending: deque[asyncio.Task[bool]] = deque()
            try:
                for index, chunk in enumerate(chunks):
                    header = _header(scope, Kind.DATA, message_id, index, len(chunks), size)
                    frame = b"".join([header.encode(), *chunk])
                    pending.append(asyncio.create_task(self._deliver(scope, target, frame)))
                    if len(pending) >= self.send_window:
                        await pending.popleft()
                while pending:
                    await pending.popleft()
            finally:
                for task in pending:
                    task.cancel()

    async def _control(self, scope: Scope, kind: Kind, target: str | None = None) -> None:
        frame = _header(scope, kind).encode()
        if kind in (Kind.JOIN, Kind.HELLO):
            frame += self._domain
        await self._deliver(scope, target, frame)

    async def _deliver(self, scope: Scope, target: str | None, frame: bytes) -> bool:
        """Publish one frame, again after a reconnection if the connection failed under it,
        and again while its receiver is known but not subscribed (it is re-subscribing after
        an outage). Receivers drop the duplicates this may make. False when the receiver is
        not there; raises `BrokerOutageError` once the backend gave up."""
        pause = UNROUTABLE_RETRY[0]
        while True:
            if not self._up.is_set():
                await self._up.wait()
            if self.failure is not None:
                raise self.failure
            generation = self._generation
            try:
                await self._publish(scope, target, frame)
                return True
            except Unroutable:
                if target is None or not self._knows(scope, target):
                    return False  # like any message to an end that is not there
                await asyncio.sleep(pause)
                pause = min(2 * pause, UNROUTABLE_RETRY[1])
            except self.transport_errors as exc:
                if not self._connected:
                    raise
                if generation == self._generation:
                    self._transport_lost(exc)

    def _knows(self, scope: Scope, end_id: str) -> bool:
        state = self._states.get((scope.channel, scope.group))
        return state is not None and state.scope == scope and end_id in state.peers

    # -- outages --------------------------------------------------------------------------
    def _transport_lost(self, error: BaseException | None) -> None:
        """The connection dropped (a subclass noticed): reconnect in the background."""
        if not self._connected or self.failure is not None:
            return
        if self._reconnecting is not None and not self._reconnecting.done():
            return
        self._up.clear()
        log.warning(
            "broker connection lost; reconnecting",
            sort=self.sort,
            end=self.end_id,
            error=repr(error),
            give_up_after=self.outage_timeout,
        )
        self._reconnecting = self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        """Open the transport and subscribe every scope again, pausing between attempts; give
        up after `outage_timeout` seconds. Peers are not judged while we cannot hear them."""
        started = time.monotonic()
        deadline = started + self.outage_timeout
        pause = RECONNECT_DELAYS[0]
        while True:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._discard_transport()
            try:
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    await self._open()
                    for state in list(self._states.values()):
                        await self._subscribe(state.scope)
                break
            except Exception as exc:
                if time.monotonic() + pause >= deadline:
                    self._give_up(time.monotonic() - started, exc)
                    return
                log.debug("reconnection attempt failed", sort=self.sort, error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(2 * pause, RECONNECT_DELAYS[1])
        now = time.monotonic()
        for state in self._states.values():
            for peer in state.peers:
                state.peers[peer] = now + self.liveness_timeout
        self._generation += 1
        self._up.set()
        seconds = round(now - started, 2)
        log.info("broker connection restored", sort=self.sort, end=self.end_id, seconds=seconds)
        for state in list(self._states.values()):
            self._spawn(self._beat(state.scope, Kind.JOIN))

    def _give_up(self, seconds: float, error: BaseException) -> None:
        self.failure = BrokerOutageError(
            f"{self.sort} broker unreachable for {seconds:.0f} s (outage bound "
            f"{self.outage_timeout:g} s); end {self.end_id} gives up; last error: {error!r}"
        )
        log.error(
            "broker outage too long; giving up",
            sort=self.sort,
            end=self.end_id,
            seconds=round(seconds, 2),
            error=repr(error),
        )
        self._up.set()  # wake the senders: they raise the failure
        for state in self._states.values():
            for peer in list(state.peers):
                self._drop_peer(state, peer)

    # -- liveness -------------------------------------------------------------------------
    async def _tick(self) -> None:
        """Send heartbeats and expire silent peers; a stalled loop postpones judgement."""
        interval = self.heartbeat_interval
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            stall = now - last - interval
            last = now
            if not self._up.is_set() or self.failure is not None:
                continue  # deaf: judge nobody (deadlines restart on reconnection)
            for state in list(self._states.values()):
                if stall > interval:
                    for peer in state.peers:
                        state.peers[peer] += stall
                else:
                    for peer in [p for p, d in state.peers.items() if d < now]:
                        log.info("peer timed out", channel=state.scope.channel, peer=peer)
                        self._drop_peer(state, peer)
                if state.beating is None or state.beating.done():
                    state.beating = self._spawn(self._beat(state.scope))
            if self.shm is not None:
                self.shm.sweep_due()

    async def _beat(self, scope: Scope, kind: Kind = Kind.BEAT) -> None:
        try:
            await self._control(scope, kind)
        except Exception as exc:
            log.warning("heartbeat failed", channel=scope.channel, kind=kind.name, error=repr(exc))

    # -- helpers --------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._background.spawn(coro)

    async def _shutdown(self) -> None:
        await self._background.cancel([self._ticker])
        self._ticker = None
        await self._dispatcher.stop()
        self._connected = False
        self._up.clear()

    def _check_scope(self, scope: Scope) -> None:
        if scope.job_id != self.job_id or scope.end_id != self.end_id:
            raise ValueError(
                f"scope {scope} does not belong to this backend (job {self.job_id!r}, "
                f"end {self.end_id!r})"
            )


def _header(
    scope: Scope, kind: Kind, message_id: int = 0, index: int = 0, count: int = 1, total: int = 0
) -> Header:
    return Header(
        kind, scope.job_id, scope.channel, scope.group, scope.me, scope.end_id,
        message_id, index, count, total,
    )  # fmt: skip


def _check_origin(scope: Scope, header: Header) -> None:
    if (header.job_id, header.channel, header.group) != (scope.job_id, scope.channel, scope.group):
        raise FrameError(
            f"foreign frame for job {header.job_id!r} channel {header.channel!r} "
            f"group {header.group!r}"
        )
    if header.role != scope.other:
        raise FrameError(f"frame from role {header.role!r}, expected {scope.other!r}")
