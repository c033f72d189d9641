"""`flame.channel.Channel`: Flame's blocking channel API over one of our SDK's async channels."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from flame.mode.message import MessageType
from flame.runtime import call
from flame_sdk.channels import Channel as SdkChannel

WIRE_KEYS = {m.value: m for m in MessageType}

Received = tuple[dict[Any, Any] | None, datetime | None]


def _torch() -> Any:
    """torch, if the role's program imported it (Flame's rule for the model framework)."""
    return sys.modules.get("torch")


def _to_array(value: Any) -> Any:
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _outgoing(value: Any) -> Any:
    """Tensors (alone or as a state dict) become numpy arrays, which our wire format carries."""
    if isinstance(value, Mapping) and value:
        arrays = {str(k): _to_array(v) for k, v in value.items()}
        if all(isinstance(a, np.ndarray) for a in arrays.values()):
            return arrays
        return value
    return _to_array(value)


def _named_arrays(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(a, np.ndarray) for a in value.values())
    )


def _incoming(value: Any) -> Any:
    """Arrays (alone or named) become tensors when the program uses torch."""
    torch = _torch()
    if torch is None:
        return value
    if isinstance(value, np.ndarray):
        return torch.tensor(value)
    if _named_arrays(value):
        return {k: torch.tensor(a) for k, a in value.items()}
    return value


def encode(message: Mapping[Any, Any]) -> dict[str, Any]:
    """A Flame message (MessageType keys) as our wire message (string keys)."""
    return {_wire_key(k): _outgoing(v) for k, v in message.items()}


def _wire_key(key: Any) -> str:
    return key.value if isinstance(key, MessageType) else str(key)


def decode(message: Mapping[str, Any]) -> dict[Any, Any]:
    """Our wire message as a Flame message: known keys back to MessageType members."""
    return {WIRE_KEYS.get(k, k): _incoming(v) for k, v in message.items()}


class Channel:
    """One joined channel with Flame's blocking methods; call them from a role's tasklets
    (plain functions, which run in worker threads), not on the event loop."""

    def __init__(self, channel: SdkChannel) -> None:
        self._channel = channel

    @property
    def properties(self) -> dict[str, Any]:
        return self._channel.properties

    def name(self) -> str:
        return self._channel.name

    def ends(self, state: str | None = None) -> list[str]:
        """The ends the selector picks (`state` "send"/"recv" is remembered)."""
        return call(self._channel.ends(state))

    def one_end(self, state: str | None = None) -> str | None:
        return call(self._channel.one_end(state))

    def all_ends(self) -> list[str]:
        return self._channel.all_ends()

    def empty(self) -> bool:
        return self._channel.empty()

    def has(self, end_id: str) -> bool:
        return self._channel.has(end_id)

    def send(self, end_id: str, message: Mapping[Any, Any]) -> None:
        call(self._channel.send(end_id, encode(message)))

    def broadcast(self, message: Mapping[Any, Any]) -> None:
        call(self._channel.broadcast(encode(message)))

    def recv(self, end_id: str) -> Received:
        """`(message, arrival time)`; `(None, None)` if the end is gone."""
        message = call(self._channel.recv(end_id))
        return (None, None) if message is None else (decode(message), datetime.now())

    def recv_fifo(self, end_ids: Iterable[str], first_k: int = 0) -> Iterator[tuple[Any, Any]]:
        """Yield `(message, (end, arrival time))` in arrival order, one per end (`first_k` of
        them if > 0); an end that left yields `(None, (end, None))`. Unconsumed messages stay
        queued for later calls."""
        pending = list(dict.fromkeys(end_ids))
        for _ in range(first_k if first_k > 0 else len(pending)):
            got = call(self._channel.recv_any(pending))
            if got is None:
                return
            end, message = got
            pending.remove(end)
            if message is None:
                yield None, (end, None)
            else:
                yield decode(message), (end, datetime.now())

    def await_join(self, timeout: float | None = None) -> bool:
        """Wait for at least one end; like Flame, True means the wait timed out."""
        return not call(self._channel.await_join(1, timeout))

    def set_property(self, key: str, value: Any) -> None:
        self._channel.set_property(key, value)

    def get_end_property(self, end_id: str, key: str) -> Any:
        return self._channel.get_end_property(end_id, key)

    def set_end_property(self, end_id: str, key: str, value: Any) -> None:
        self._channel.set_end_property(end_id, key, value)
