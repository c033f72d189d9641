"""Bounded memory of the event ids a consumer handled (or is handling): dedupe by event id."""

from __future__ import annotations

from collections import OrderedDict

RECENT_IDS = 10_000  # ids remembered per consumer (the oldest are forgotten first)


class RecentIds:
    """An LRU set of event ids: `claim` before handling an event, `release` if handling failed
    (so its redelivery is handled again)."""

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def claim(self, event_id: str) -> bool:
        """True the first time `event_id` is seen (it is then remembered), False for a repeat."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def release(self, event_id: str) -> None:
        self._ids.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._ids)
