"""The event loop a role's chain runs on, so its tasklets' blocking channel calls reach it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flame_sdk.channels import ChannelManager

T = TypeVar("T")


@dataclass
class ChainLoop:
    """The loop running a chain, and the channel managers its tasklets opened on it."""

    loop: asyncio.AbstractEventLoop
    managers: list[ChannelManager] = field(default_factory=list)
    ended: bool = False


CURRENT: ContextVar[ChainLoop | None] = ContextVar("flame_chain_loop", default=None)
"""Set while a chain runs; tasklets (worker threads) inherit it with their context."""


async def running_chain(run: Callable[[], Awaitable[None]]) -> None:
    """Await `run()` with `CURRENT` set to this loop; close the managers opened meanwhile."""
    state = ChainLoop(asyncio.get_running_loop())
    token = CURRENT.set(state)
    try:
        await run()
    finally:
        state.ended = True  # a tasklet still blocked in `call` gives up
        CURRENT.reset(token)
        for manager in state.managers:
            await manager.close()


def chain_loop() -> ChainLoop:
    """The running chain's loop, for a blocking call from one of its tasklets."""
    state = CURRENT.get()
    if state is None:
        raise RuntimeError("Flame's blocking channel API works inside a role's tasklets")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return state
    raise RuntimeError(
        "a blocking channel call on the event loop would never return; call it from a plain "
        "(non-async) tasklet function"
    )


CHECK_SECONDS = 1.0  # how often a blocked call looks whether its chain still runs


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the running chain's loop and wait for its result (from a worker thread),
    as long as the coroutine's own bounds allow and the chain runs: once the chain ended or
    its loop stopped, the call is cancelled and raises RuntimeError."""
    try:
        state = chain_loop()
    except RuntimeError:
        coro.close()
        raise
    future = asyncio.run_coroutine_threadsafe(coro, state.loop)
    while True:
        try:
            return future.result(timeout=CHECK_SECONDS)
        except concurrent.futures.TimeoutError:
            if state.ended or state.loop.is_closed() or not state.loop.is_running():
                future.cancel()
                raise RuntimeError(
                    "the role's chain ended during a blocking channel call"
                ) from None
