"""`fedbuff` selector: keeps at most `c` ends in flight per requester (asynchronous FL).

Per requester (the `requester` channel property) an in-flight set: an end leaves it when the
channel marks it received (end property `state == "recvd"`) or when it vanished. State `send`
returns only *new* ends, not in flight for any requester, drawn uniformly up to `c - |in flight|`.
State `recv` returns the in-flight set; if empty, it draws up to `c` free ends and puts them in
flight. `reset(requester)` frees a departed requester's ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from flame_sdk.selectors.base import (
    END_RECVD,
    END_STATE,
    RECV,
    REQUESTER,
    SEND,
    STATE,
    EndState,
    Selector,
    sample,
)


class FedBuffSelector(Selector):
    """Concurrency-limited selection of ends."""

    sort: ClassVar[str] = "fedbuff"

    def __init__(self, c: int, seed: int | None = None) -> None:
        self.c = c
        self.rng = np.random.default_rng(seed)
        self.in_flight: dict[str, set[str]] = {}

    def select(self, ends: Mapping[str, EndState], props: Mapping[str, Any]) -> list[str]:
        requester, state = props.get(REQUESTER), props.get(STATE)
        if not isinstance(requester, str) or not requester:
            raise ValueError(f"fedbuff selector needs the channel property {REQUESTER!r}")
        if state not in (SEND, RECV):
            raise ValueError(f"fedbuff selector: channel property {STATE!r} must be send or recv")
        mine = self.in_flight.setdefault(requester, set())
        mine -= {
            end
            for end in mine
            if end not in ends or ends[end].properties.get(END_STATE) == END_RECVD
        }
        if state == RECV and mine:
            return sorted(mine)
        room = self.c - len(mine) if state == SEND else self.c
        busy = set().union(*self.in_flight.values())
        chosen = sample(self.rng, sorted(set(ends) - busy), room)
        mine.update(chosen)
        return chosen

    def reset(self, requester: str) -> None:
        self.in_flight.pop(requester, None)
