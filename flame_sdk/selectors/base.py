"""The selector port: which ends of a channel a role talks to next, and the end view it needs.

The channel layer calls `select(ends, props)` before every send/receive with its current ends and
the channel properties `round` (int, default 0), `state` ("send"/"recv") and `requester` (this
end's id). Selectors are single-threaded (the channel serialises calls) and deterministic when
built with a `seed`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

# channel properties
ROUND = "round"
STATE = "state"
REQUESTER = "requester"
SEND = "send"
RECV = "recv"
# end property set by the channel: END_RECVD once a message from the end was received,
# END_SENT (or anything else) once a message was sent to it
END_STATE = "state"
END_RECVD = "recvd"
END_SENT = "sent"


@runtime_checkable
class EndState(Protocol):
    """What a selector sees of an end."""

    @property
    def id(self) -> str: ...

    @property
    def properties(self) -> Mapping[str, Any]: ...


@dataclass
class End:
    """A plain `EndState` (tests, simple adapters)."""

    id: str
    properties: dict[str, Any] = field(default_factory=dict)


def round_of(props: Mapping[str, Any]) -> int:
    value = props.get(ROUND, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"channel property {ROUND!r} must be an int, got {value!r}")
    return value


def sample(rng: np.random.Generator, ids: Sequence[str], k: int) -> list[str]:
    """`k` of `ids` uniformly without replacement (order of the draw)."""
    k = min(k, len(ids))
    if k <= 0:
        return []
    return [ids[i] for i in rng.choice(len(ids), size=k, replace=False)]


class Selector(abc.ABC):
    """Chooses end ids among the channel's current ends."""

    sort: ClassVar[str]

    @abc.abstractmethod
    def select(self, ends: Mapping[str, EndState], props: Mapping[str, Any]) -> list[str]:
        """The end ids to send to / receive from now."""

    def reset(self, requester: str) -> None:  # noqa: B027 (optional hook)
        """Forget what was selected on behalf of a departed requester (no-op by default)."""


class PerRoundSelector(Selector):
    """Picks once per round: the pick is frozen until `round` increases.

    Ends that vanished are dropped from the answer; when none of the pick is left, it picks again.
    """

    def __init__(self) -> None:
        self.round: int | None = None
        self.chosen: list[str] = []

    def select(self, ends: Mapping[str, EndState], props: Mapping[str, Any]) -> list[str]:
        current = round_of(props)
        alive = [end for end in self.chosen if end in ends]
        if self.round is not None and current <= self.round and alive:
            return alive
        self.round = current
        self.chosen = self.pick(ends, current)
        return list(self.chosen)

    @abc.abstractmethod
    def pick(self, ends: Mapping[str, EndState], round_: int) -> list[str]:
        """A fresh pick for `round_`."""
