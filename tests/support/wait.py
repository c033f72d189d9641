"""Bounded waits: poll a condition until it holds, or fail naming what and the last value seen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT = 15.0
INTERVAL = 0.05


Described = str | Callable[[], str] | None


def describe(check: Callable[..., Any]) -> str:
    """The source of a lambda (what the test wrote), else the callable's name."""
    name = getattr(check, "__qualname__", repr(check))
    if name.endswith("<lambda>"):
        try:
            return " ".join(inspect.getsource(check).split())
        except (OSError, TypeError):
            pass
    return name


def _failure(
    check: Callable[..., Any], what: Described, timeout: float, last: Any
) -> AssertionError:
    name = what() if callable(what) else what or describe(check)
    return AssertionError(f"waited {timeout:g} s for {name}; last value seen: {last!r}")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    what: Described = None,
) -> T:
    """Call `check` (sync or async) until it returns something truthy and return that value.

    After `timeout` seconds fail with an AssertionError naming `what` (a text, or a callable
    giving it then; default: the source of a lambda `check`, else its name) and the last value
    `check` returned.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise _failure(check, what, timeout, value)
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    what: Described = None,
) -> T:
    """`eventually` for code without an event loop (threads, subprocesses): blocks the caller."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(check, what, timeout, value)
        time.sleep(interval)
