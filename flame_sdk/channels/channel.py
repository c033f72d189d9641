"""A joined channel: the ends of one group, the selector over them, and async send/receive."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from flame_common.logs import get_logger
from flame_sdk import wire
from flame_sdk.backends.base import Backend, Scope
from flame_sdk.channels.end import SENT, STATE, End

log = get_logger(__name__)

SEND, RECV = "send", "recv"


class Selector(Protocol):
    def select(self, ends: Mapping[str, Any], props: Mapping[str, Any]) -> list[str]: ...


class Channel:
    """One (job, channel, group) seen from this end.

    Ends appear on join and disappear on leave (or liveness loss); a receiver waiting on an end
    that disappears gets None. Messages of each end queue in arrival order; `recv_fifo`
    interleaves several ends by arrival and leaves unconsumed messages queued.
    """

    def __init__(
        self,
        scope: Scope,
        backend: Backend,
        selector: Selector,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.scope, self.backend, self.selector = scope, backend, selector
        self.name = scope.channel
        self.max_message_bytes = max_message_bytes
        self.properties: dict[str, Any] = {"requester": scope.end_id}
        self.stats = {"send.bytes": 0, "recv.bytes": 0, "broadcast.bytes": 0}
        self._ends: dict[str, End] = {}
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._watchers: list[set[str]] = []  # per recv_fifo: ends changed since it looked
        self.joined = False

    # membership (called by the channel manager on backend events) -----------------------------
    def on_join(self, end_id: str) -> End:
        end = self._ends.get(end_id)
        if end is None or end.gone:
            if end is None:
                end = self._ends[end_id] = End(end_id)
            end.gone = False
            log.debug("end joined", channel=self.name, end=end_id)
            self._notify(end_id)
        return end

    def on_leave(self, end_id: str) -> None:
        """Mark the end gone; it stays visible until its queued messages are consumed."""
        end = self._ends.get(end_id)
        if end is not None:
            end.gone = True
            if not end.inbox:
                del self._ends[end_id]
            log.info("end left", channel=self.name, end=end_id)
            self._notify(end_id)

    def _take(self, end: End) -> wire.Message | None:
        message = end.take()
        if end.gone and not end.inbox and self._ends.get(end.id) is end:
            del self._ends[end.id]
        return message

    def on_message(self, end_id: str, data: bytes | bytearray) -> None:
        """Decode and queue; the arrays view `data` (no copy), writable when `data` is."""
        try:
            message = wire.decode(data, self.max_message_bytes)
        except wire.WireError as exc:
            log.warning("message dropped", channel=self.name, sender=end_id, reason=exc.message)
            return
        self.stats["recv.bytes"] += len(data)
        end = self._ends.get(end_id) or self.on_join(end_id)
        end.inbox.append((next(self._seq), message))
        self._notify(end_id)

    def _notify(self, end_id: str) -> None:
        for touched in self._watchers:
            touched.add(end_id)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, deadline: float | None) -> bool:
        """Wait for any change; False if the deadline passed first. Raises the backend's
        `BrokerOutageError` once it gave up reconnecting."""
        if self.backend.failure is not None:
            raise self.backend.failure
        event = self._changed
        if deadline is None:
            await event.wait()
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(event.wait(), remaining)
        except TimeoutError:
            return False
        return True

    # queries -----------------------------------------------------------------------------------
    async def ends(self, state: str | None = None) -> list[str]:
        """The ends the selector picks now; `state` ('send'/'recv') is remembered."""
        if state is not None:
            self.properties["state"] = state
        return list(self.selector.select(dict(self._ends), dict(self.properties)))

    async def one_end(self, state: str | None = None) -> str | None:
        ends = await self.ends(state)
        return ends[0] if ends else None

    def all_ends(self) -> list[str]:
        return list(self._ends)

    def empty(self) -> bool:
        return not self._ends

    def has(self, end_id: str) -> bool:
        return end_id in self._ends

    async def await_join(self, min_ends: int = 1, timeout: float | None = None) -> bool:
        """Wait until at least `min_ends` ends are present; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._ends) < min_ends:
            if not await self._wait(deadline):
                return False
        return True

    # properties ------------------------------------------------------------------------------
    def set_property(self, key: str, value: Any) -> None:
        self.properties[key] = value

    def get_property(self, key: str, default: Any = None) -> Any:
        return self.properties.get(key, default)

    def set_end_property(self, end_id: str, key: str, value: Any) -> None:
        if end_id in self._ends:
            self._ends[end_id].properties[key] = value

    def get_end_property(self, end_id: str, key: str, default: Any = None) -> Any:
        end = self._ends.get(end_id)
        return default if end is None else end.properties.get(key, default)

    # data --------------------------------------------------------------------------------------
    async def send(self, end_id: str, message: Mapping[str, Any]) -> None:
        await self.multicast([end_id], message)

    async def multicast(self, end_ids: Iterable[str], message: Mapping[str, Any]) -> None:
        """Send one message to several ends, encoding it once (as parts: arrays are not copied)."""
        parts = wire.encode_parts(message)
        size = sum(len(p) for p in parts)
        targets = list(dict.fromkeys(end_ids))
        await self.backend.multicast(self.scope, targets, parts)
        for end_id in targets:
            self.stats["send.bytes"] += size
            if end_id in self._ends:
                self._ends[end_id].properties[STATE] = SENT

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        parts = wire.encode_parts(message)
        self.stats["broadcast.bytes"] += sum(len(p) for p in parts)
        await self.backend.broadcast(self.scope, parts)

    async def recv(self, end_id: str, timeout: float | None = None) -> wire.Message | None:
        """The next message of `end_id`; None if the end is (or becomes) absent or on timeout."""
        end = self._ends.get(end_id)
        if end is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not end.ready:
            if not await self._wait(deadline):
                return None
        return self._take(end)

    async def recv_fifo(
        self, end_ids: Iterable[str], first_k: int = 0, timeout: float | None = None
    ) -> AsyncIterator[tuple[str, wire.Message | None]]:
        """Yield `(end, message)` in arrival order, one per end (None for ends that left).

        Stops after `first_k` items if > 0, or when `timeout` seconds have passed. Each wake-up
        looks only at the ends that changed (a heap orders the ready ones), not at all of them.
        """
        pending = {e: self._ends.get(e) for e in dict.fromkeys(end_ids)}
        limit = first_k if first_k > 0 else len(pending)
        deadline = None if timeout is None else time.monotonic() + timeout
        yielded = 0
        touched = set(pending)  # ends to (re)consider; the channel adds the ones that change
        self._watchers.append(touched)
        rank = {e: i for i, e in enumerate(pending)}  # ties go in the order asked
        ready: list[tuple[float, int, str]] = []  # (head sequence or -1 if absent, rank, end)
        try:
            while pending and yielded < limit:
                for end_id in touched:
                    if end_id in pending and _ready(pending[end_id]):
                        heapq.heappush(ready, (_order(pending[end_id]), rank[end_id], end_id))
                touched.clear()
                picked = _pop_ready(ready, pending)
                if picked is None:
                    if not await self._wait(deadline):
                        return
                    continue
                end = pending.pop(picked)
                yielded += 1
                yield picked, (None if end is None else self._take(end))
        finally:
            self._watchers[:] = [w for w in self._watchers if w is not touched]

    async def recv_any(
        self, end_ids: Iterable[str], timeout: float | None = None
    ) -> tuple[str, wire.Message | None] | None:
        """The first `(end, message)` to arrive among `end_ids`; None on timeout or no ends."""
        async for item in self.recv_fifo(end_ids, first_k=1, timeout=timeout):
            return item
        return None

    async def leave(self) -> None:
        if self.joined:
            self.joined = False
            await self.backend.leave(self.scope)


def _ready(end: End | None) -> bool:
    return end is None or end.ready


def _order(end: End | None) -> float:
    """Where a ready end goes in `recv_fifo`: absent ends first, then by head arrival."""
    return -1 if end is None else end.head_seq()


def _pop_ready(ready: list[tuple[float, int, str]], pending: dict[str, End | None]) -> str | None:
    """The pending end whose message arrived first; stale heap entries (taken meanwhile by
    another receiver, or already yielded) are dropped or re-queued by their current order."""
    while ready:
        order, rank, end_id = heapq.heappop(ready)
        if end_id not in pending:
            continue
        end = pending[end_id]
        if not _ready(end):
            continue
        if _order(end) != order:
            heapq.heappush(ready, (_order(end), rank, end_id))
            continue
        return end_id
    return None
