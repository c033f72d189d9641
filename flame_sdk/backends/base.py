"""The backend port: moves opaque, already-encoded messages between ends of a channel.

A backend knows nothing about weights or rounds. The channel layer above it encodes messages
(`flame_sdk.wire`), tracks ends and runs selectors. One backend instance serves every channel of
one process that uses that backend sort.

Contract (every adapter, checked by one shared contract test suite):
- `join(scope)` makes this end reachable on the scope and announces it; every other end already
  joined on the same (job, channel, group) learns of it through `on_join`, and this end learns of
  every end already present (each side sees `on_join` exactly once per peer it discovers).
  Only ends of the *other* role are reported, except on self-loop channels (`me == other`), where
  every other end is reported. An end never sees itself.
- `send(scope, end_id, data)` delivers `data` to exactly that end, in order per (sender, receiver).
  Payloads of any size are accepted (the backend chunks them below its broker's limit). `data`
  is one buffer or a sequence of buffers that is sent as their concatenation (so that an
  encoder need not join them); the receiver gets one bytes-like buffer.
- `broadcast(scope, data)` delivers to every end of the other role currently joined.
- `multicast(scope, end_ids, data)` is `send` to each of `end_ids` (the broker backends write
  one shared-memory copy for all the ends on their host).
- `leave(scope)` announces departure (peers get `on_leave`); `close()` leaves everything.
- Liveness: an end that dies without leaving is reported through `on_leave` within the backend's
  liveness timeout (heartbeats), so that waiting receivers are unblocked.
- Received data reaches `on_message(scope, sender_end_id, data)`. Malformed or foreign frames
  (another job, unknown channel, bad header) are dropped with a log line, never raised.
- Broker backends survive a broker outage: they reconnect, subscribe again and publish again
  what the broker did not confirm (receivers drop the duplicates). After an outage longer than
  their bound they give up: `failure` is set to a `BrokerOutageError`, every peer is reported
  gone, and sends (and the channels' waits) raise it.
- Misuse fails loudly: a scope of another job or end raises ValueError; `send`/`broadcast` on a
  scope not joined raise RuntimeError. Sending to an end that is not (or no longer) there is
  silently lost, like any message to a departed peer.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """Where an end lives: one group of one channel of one job, seen from one role."""

    job_id: str
    channel: str
    group: str
    me: str  # this end's role
    other: str  # the peer role (== me on self-loop channels)
    end_id: str  # this end's id (the task id)


Payload = bytes | bytearray | memoryview
Parts = Payload | Sequence[Payload]

JoinHandler = Callable[[Scope, str], Awaitable[None]]
LeaveHandler = Callable[[Scope, str], Awaitable[None]]
MessageHandler = Callable[[Scope, str, bytes | bytearray], Awaitable[None]]


class BrokerOutageError(ConnectionError):
    """The broker stayed unreachable longer than the backend's outage bound."""


class Backend(abc.ABC):
    """One transport shared by the channels of a process."""

    sort: str = ""

    def __init__(self) -> None:
        self.failure: BrokerOutageError | None = None
        self.on_join: JoinHandler | None = None
        self.on_leave: LeaveHandler | None = None
        self.on_message: MessageHandler | None = None

    def bind(
        self, on_join: JoinHandler, on_leave: LeaveHandler, on_message: MessageHandler
    ) -> None:
        self.on_join, self.on_leave, self.on_message = on_join, on_leave, on_message

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; idempotent."""

    @abc.abstractmethod
    async def join(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def leave(self, scope: Scope) -> None: ...

    @abc.abstractmethod
    async def send(self, scope: Scope, end_id: str, data: Parts) -> None: ...

    @abc.abstractmethod
    async def broadcast(self, scope: Scope, data: Parts) -> None: ...

    async def multicast(self, scope: Scope, end_ids: Sequence[str], data: Parts) -> None:
        """`send` to each end in turn (adapters may share one copy of the payload)."""
        for end_id in end_ids:
            await self.send(scope, end_id, data)

    @abc.abstractmethod
    async def close(self) -> None: ...
