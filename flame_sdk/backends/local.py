"""In-process backend: ends of a job meet in a shared hub and trade bytes via asyncio queues."""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass

from flame_common.logs import get_logger
from flame_sdk.backends.base import Backend, Parts, Scope
from flame_sdk.backends.dispatch import Dispatcher, Event, EventKind

log = get_logger(__name__)

DEFAULT_LIVENESS_TIMEOUT = 0.5


def sees(viewer: Scope, peer: Scope) -> bool:
    """Whether `viewer` reports `peer` as an end: the peer plays the viewer's other role."""
    return peer.me == viewer.other and peer.end_id != viewer.end_id


@dataclass(frozen=True, slots=True)
class _Member:
    backend: LocalBackend
    scope: Scope


GroupKey = tuple[str, str, str]


def _group_key(scope: Scope) -> GroupKey:
    return scope.job_id, scope.channel, scope.group


class LocalHub:
    """Membership of every (job, channel, group) of the ends that share this hub (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[GroupKey, dict[str, _Member]] = {}

    def add(self, member: _Member) -> list[_Member] | None:
        """Register a member; return the peers it sees, or None if it was already there."""
        with self._lock:
            group = self._groups.setdefault(_group_key(member.scope), {})
            if member.scope.end_id in group:
                return None
            group[member.scope.end_id] = member
            return [m for m in group.values() if sees(member.scope, m.scope)]

    def remove(self, scope: Scope) -> list[_Member] | None:
        """Unregister the end of `scope`; return the peers that saw it, or None if it was absent."""
        key = _group_key(scope)
        with self._lock:
            group = self._groups.get(key, {})
            member = group.get(scope.end_id)
            if member is None or member.scope != scope:
                return None
            del group[scope.end_id]
            if not group:
                self._groups.pop(key, None)
            return [m for m in group.values() if sees(m.scope, scope)]

    def peer(self, scope: Scope, end_id: str) -> _Member | None:
        with self._lock:
            member = self._groups.get(_group_key(scope), {}).get(end_id)
        return member if member is not None and sees(scope, member.scope) else None

    def peers(self, scope: Scope) -> list[_Member]:
        with self._lock:
            group = self._groups.get(_group_key(scope), {})
            return [m for m in group.values() if sees(scope, m.scope)]


_hubs: weakref.WeakValueDictionary[str, LocalHub] = weakref.WeakValueDictionary()
_hubs_lock = threading.Lock()


def hub_for(job_id: str) -> LocalHub:
    """The process-wide hub of a job, shared by every LocalBackend created for that job id."""
    with _hubs_lock:
        hub = _hubs.get(job_id)
        if hub is None:
            hub = _hubs[job_id] = LocalHub()
        return hub


class LocalBackend(Backend):
    """Ends in one process; payloads are handed over by reference (no copy of `bytes`).

    Liveness is explicit: `leave`/`close` announce departure at once; `kill()` (a test hook that
    simulates a crash) drops the end silently and its peers get `on_leave` after
    `liveness_timeout` seconds.
    """

    sort = "local"

    def __init__(
        self,
        job_id: str,
        end_id: str,
        *,
        hub: LocalHub | None = None,
        liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
    ) -> None:
        super().__init__()
        self.job_id, self.end_id = job_id, end_id
        self.hub = hub if hub is not None else hub_for(job_id)
        self.liveness_timeout = liveness_timeout
        self._dispatcher = Dispatcher(self)
        self._scopes: set[Scope] = set()
        self._killed = False

    async def connect(self) -> None:
        self._check_alive()
        self._dispatcher.start()

    async def join(self, scope: Scope) -> None:
        self._check_scope(scope)
        await self.connect()
        peers = self.hub.add(_Member(self, scope))
        if peers is None:
            return
        self._scopes.add(scope)
        for peer in peers:
            self._dispatcher.post(Event(EventKind.JOIN, scope, peer.scope.end_id))
            peer.backend._post(Event(EventKind.JOIN, peer.scope, scope.end_id))

    async def leave(self, scope: Scope) -> None:
        self._check_alive()
        self._scopes.discard(scope)
        self._announce_leave(scope)

    async def send(self, scope: Scope, end_id: str, data: Parts) -> None:
        self._check_joined(scope)
        peer = self.hub.peer(scope, end_id)
        if peer is None:
            log.warning("local send to an unknown end dropped", channel=scope.channel, end=end_id)
            return
        peer.backend._post(Event(EventKind.MESSAGE, peer.scope, scope.end_id, _as_bytes(data)))

    async def broadcast(self, scope: Scope, data: Parts) -> None:
        self._check_joined(scope)
        payload = _as_bytes(data)
        for peer in self.hub.peers(scope):
            peer.backend._post(Event(EventKind.MESSAGE, peer.scope, scope.end_id, payload))

    async def close(self) -> None:
        if not self._killed:
            for scope in list(self._scopes):
                await self.leave(scope)
        await self._dispatcher.stop()

    async def kill(self) -> None:
        """Test hook: die without leaving; peers learn of it only after the liveness timeout."""
        self._killed = True
        scopes, self._scopes = list(self._scopes), set()
        await self._dispatcher.stop()
        loop = asyncio.get_running_loop()
        for scope in scopes:
            loop.call_later(self.liveness_timeout, self._announce_leave, scope)

    def _announce_leave(self, scope: Scope) -> None:
        for peer in self.hub.remove(scope) or []:
            peer.backend._post(Event(EventKind.LEAVE, peer.scope, scope.end_id))

    def _post(self, event: Event) -> None:
        if not self._killed:
            self._dispatcher.post(event)

    def _check_alive(self) -> None:
        if self._killed:
            raise RuntimeError(f"local backend of end {self.end_id!r} was killed")

    def _check_scope(self, scope: Scope) -> None:
        self._check_alive()
        if scope.job_id != self.job_id or scope.end_id != self.end_id:
            raise ValueError(
                f"scope {scope} does not belong to this backend (job {self.job_id!r}, "
                f"end {self.end_id!r})"
            )

    def _check_joined(self, scope: Scope) -> None:
        self._check_scope(scope)
        if scope not in self._scopes:
            raise RuntimeError(f"channel {scope.channel!r} group {scope.group!r} is not joined")


def _as_bytes(data: Parts) -> bytes:
    """One immutable buffer that every receiver may share (views of it stay read-only)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return b"".join(data)
