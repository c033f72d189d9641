"""One peer of a channel: its id, its selector-visible properties and its inbox."""

from __future__ import annotations

from collections import deque
from typing import Any

from flame_sdk.wire import Message

STATE = "state"  # end property: RECVD once a message of the end was consumed, SENT after a send
RECVD = "recvd"
SENT = "sent"


class End:
    """A peer end (identified by its task id) as seen from one channel."""

    def __init__(self, end_id: str) -> None:
        self.id = end_id
        self.properties: dict[str, Any] = {}
        self.inbox: deque[tuple[int, Message]] = deque()  # (arrival sequence number, message)
        self.gone = False

    def __repr__(self) -> str:
        return f"End({self.id!r}{', gone' if self.gone else ''})"

    @property
    def ready(self) -> bool:
        """A recv on this end would return now (a message, or None because it left)."""
        return bool(self.inbox) or self.gone

    def head_seq(self) -> float:
        return self.inbox[0][0] if self.inbox else float("inf")

    def take(self) -> Message | None:
        """The next message, or None once the end left and its inbox is drained."""
        if self.inbox:
            self.properties[STATE] = RECVD
            return self.inbox.popleft()[1]
        return None
