"""Control flow of a role: Tasklets chained with `>>` inside a Composer, Loops, chain editing.

A tasklet's function is either a coroutine function (awaited on the role's event loop) or a
plain function (run in a worker thread, so user code may block): the composer's `executor` when
one is set (a simulation shares one among its roles), else `asyncio.to_thread`'s.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

_current: ContextVar[Composer | None] = ContextVar("flame_composer", default=None)


class ComposerError(RuntimeError):
    """A chain that cannot be built or edited as asked."""


@runtime_checkable
class LoopExecutor(Protocol):
    """An executor that runs calls for coroutines itself, choosing where (the simulation's)."""

    async def arun(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` and return its result."""
        ...


class UserCall:
    """A plain-function tasklet's call, run in the caller's context on an executor's thread;
    `kind` (the function, unbound) lets an executor tell calls of one method from others."""

    __slots__ = ("args", "context", "func", "kind", "kwargs")

    def __init__(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.context = contextvars.copy_context()
        self.func, self.args, self.kwargs = func, args, kwargs
        self.kind: object = getattr(func, "__func__", func)

    def __call__(self) -> Any:
        return self.context.run(self.func, *self.args, **self.kwargs)


class Loop:
    """`Loop(done)(last)` makes the chain that ends at `last` repeat until `done()` is true.

    `done` is checked after every member; when true, the loop exits at once (the members after
    the current one are skipped). Returns the loop's first tasklet; `first >> x` continues the
    chain after the loop.
    """

    def __init__(self, loop_check_fn: Callable[[], bool]) -> None:
        self.check = loop_check_fn
        self.start: Tasklet | None = None
        self.end: Tasklet | None = None

    def __call__(self, last: Tasklet) -> Tasklet:
        composer = last.composer
        first = last
        while (prev := composer.predecessor(first)) is not None:
            first = prev
        self.start, self.end = first, last
        for member in composer.walk(first, last):
            member.loops.append(self)
        first.exits_to = self
        return first

    def members(self) -> Iterator[Tasklet]:
        assert self.start is not None and self.end is not None
        return self.start.composer.walk(self.start, self.end)


class Tasklet:
    """One step of a chain; `alias` names it in the composer (unique)."""

    def __init__(self, alias: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        composer = _current.get()
        if composer is None:
            raise ComposerError(f"tasklet '{alias}' created outside a `with Composer()` block")
        self.alias, self.func, self.args, self.kwargs = alias, func, args, kwargs
        self.composer = composer
        self.loops: list[Loop] = []  # innermost first
        self.cont_fn: Callable[[], bool] | None = None
        self.exits_to: Loop | None = None  # set on the first tasklet of a Loop
        composer.register(self)

    def __repr__(self) -> str:
        return f"Tasklet({self.alias!r})"

    def set_continue_fn(self, fn: Callable[[], bool]) -> None:
        """After this tasklet, if `fn()` is true, restart the innermost loop's iteration."""
        self.cont_fn = fn

    def __rshift__(self, other: Tasklet | Sequence[Tasklet]) -> Tasklet:
        head, siblings = (other, []) if isinstance(other, Tasklet) else (other[0], list(other[1:]))
        source = self.exits_to.end if self.exits_to is not None and self.exits_to.end else self
        self.composer.link(source, head, siblings)
        return head

    async def do(self) -> Any:
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(self.func):
                return await self.func(*self.args, **self.kwargs)
            executor = self.composer.executor
            if executor is None:
                return await asyncio.to_thread(self.func, *self.args, **self.kwargs)
            call = UserCall(self.func, self.args, self.kwargs)
            if isinstance(executor, LoopExecutor):
                return await executor.arun(call)
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        finally:
            self.composer.runtimes[self.alias] = time.perf_counter() - started

    # chain editing ---------------------------------------------------------------------------
    def insert_before(self, new: Tasklet) -> None:
        """Put `new` right before this tasklet; it becomes a loop's first if this one was."""
        c = self.composer
        c.adopt(new)
        prev = c.predecessor(self)
        c.unlink_pair(prev, self)
        if prev is not None:
            c.link(prev, new)
        c.link(new, self)
        new.loops = list(self.loops)
        for loop in self.loops:
            if loop.start is self:
                loop.start = new
        if self.exits_to is not None:
            new.exits_to, self.exits_to = self.exits_to, None

    def insert_after(self, new: Tasklet) -> None:
        """Put `new` right after this tasklet; it becomes a loop's last if this one was."""
        c = self.composer
        c.adopt(new)
        nxt = c.successor(self)
        c.unlink_pair(self, nxt)
        c.link(self, new)
        if nxt is not None:
            c.link(new, nxt)
        new.loops = list(self.loops)
        for loop in self.loops:
            if loop.end is self:
                loop.end = new

    def replace_with(self, new: Tasklet) -> None:
        """Put `new` in this tasklet's place (loop boundaries included) and drop this one."""
        c = self.composer
        c.adopt(new)
        prev, nxt = c.predecessor(self), c.successor(self)
        c.unlink_pair(prev, self)
        c.unlink_pair(self, nxt)
        if prev is not None:
            c.link(prev, new)
        if nxt is not None:
            c.link(new, nxt)
        new.loops, new.exits_to = self.loops, self.exits_to
        for loop in self.loops:
            loop.start = new if loop.start is self else loop.start
            loop.end = new if loop.end is self else loop.end
        c.forget(self)

    def remove(self) -> None:
        """Drop this tasklet, joining its neighbours; loop boundaries cannot be removed."""
        if any(loop.start is self or loop.end is self for loop in self.loops):
            raise ComposerError(f"tasklet '{self.alias}' is a loop boundary and cannot be removed")
        c = self.composer
        prev, nxt = c.predecessor(self), c.successor(self)
        c.unlink_pair(prev, self)
        c.unlink_pair(self, nxt)
        if prev is not None and nxt is not None:
            c.link(prev, nxt)
        c.forget(self)


class Composer:
    """Holds a role's tasklets and their chain; `with composer:` makes it the current one.

    `executor`, when set, runs the plain-function tasklets (default: `asyncio.to_thread`).
    """

    def __init__(self) -> None:
        self.executor: Executor | None = None
        self.tasklets: dict[str, Tasklet] = {}
        self._next: dict[Tasklet, Tasklet] = {}
        self._prev: dict[Tasklet, Tasklet] = {}
        self._siblings: dict[Tasklet, list[Tasklet]] = {}
        self.runtimes: dict[str, float] = {}
        self._tokens: list[Any] = []

    def __enter__(self) -> Composer:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    # structure -------------------------------------------------------------------------------
    def register(self, tasklet: Tasklet) -> None:
        if tasklet.alias in self.tasklets:
            raise ComposerError(f"a tasklet named '{tasklet.alias}' already exists")
        self.tasklets[tasklet.alias] = tasklet

    def adopt(self, tasklet: Tasklet) -> None:
        if tasklet.composer is not self or self.tasklets.get(tasklet.alias) is not tasklet:
            raise ComposerError(f"tasklet '{tasklet.alias}' belongs to another composer")
        if tasklet in self._next or tasklet in self._prev:
            raise ComposerError(f"tasklet '{tasklet.alias}' is already chained")

    def forget(self, tasklet: Tasklet) -> None:
        self.tasklets.pop(tasklet.alias, None)

    def get_tasklet(self, alias: str) -> Tasklet:
        try:
            return self.tasklets[alias]
        except KeyError:
            raise ComposerError(f"no tasklet named '{alias}'") from None

    tasklet = get_tasklet

    def link(self, a: Tasklet, b: Tasklet, siblings: Sequence[Tasklet] = ()) -> None:
        if a is b or self._next.get(a) not in (None, b) or self._prev.get(b) not in (None, a):
            raise ComposerError(f"cannot chain '{a.alias}' >> '{b.alias}': would fork the chain")
        self._next[a], self._prev[b] = b, a
        if siblings:
            self._siblings[b] = list(siblings)

    def unlink_pair(self, a: Tasklet | None, b: Tasklet | None) -> None:
        if a is not None and b is not None and self._next.get(a) is b:
            del self._next[a], self._prev[b]

    def unlink(self) -> None:
        """Forget every edge and loop, keeping the tasklets (to re-chain them differently)."""
        self._next.clear()
        self._prev.clear()
        self._siblings.clear()
        for t in self.tasklets.values():
            t.loops, t.exits_to = [], None

    def predecessor(self, t: Tasklet) -> Tasklet | None:
        return self._prev.get(t)

    def successor(self, t: Tasklet) -> Tasklet | None:
        return self._next.get(t)

    def walk(self, first: Tasklet, last: Tasklet | None = None) -> Iterator[Tasklet]:
        t: Tasklet | None = first
        while t is not None:
            yield t
            if t is last:
                return
            t = self._next.get(t)
        if last is not None:
            raise ComposerError(f"'{last.alias}' does not follow '{first.alias}' in the chain")

    def root(self) -> Tasklet:
        roots = [t for t in self._next if t not in self._prev]
        chained = set(self._next) | set(self._prev)
        if not chained and len(self.tasklets) == 1:
            return next(iter(self.tasklets.values()))
        if len(roots) != 1:
            raise ComposerError(f"the chain must have exactly one first tasklet, found {roots}")
        return roots[0]

    def chain(self) -> list[str]:
        """Aliases in chain order (for inspection and tests)."""
        return [t.alias for t in self.walk(self.root())]

    # execution -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Execute the chain from its first tasklet, honouring loops and continue functions."""
        t: Tasklet | None = self.root()
        while t is not None:
            siblings = self._siblings.get(t, [])
            if siblings:
                await asyncio.gather(t.do(), *(s.do() for s in siblings))
            else:
                await t.do()
            t = self._after(t)

    def _after(self, t: Tasklet) -> Tasklet | None:
        if t.cont_fn is not None and t.loops and t.cont_fn():
            return t.loops[0].start
        current = t
        for loop in t.loops:
            if loop.check():
                assert loop.end is not None
                current = loop.end  # exit: continue after this loop's last tasklet
                continue
            if current is loop.end:
                return loop.start
            return self._next.get(current)
        return self._next.get(current)
