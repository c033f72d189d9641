"""The executor of a simulation's user methods: long ones side by side, results in call order."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

PARALLEL_FROM = 0.02  # s: a method whose previous call took this long may overlap another such
INLINE_BELOW = 0.002  # s: a method whose previous call was shorter may run on the event loop
MAX_THREADS = 4


def default_threads() -> int:
    """Worker threads for `OrderedExecutor`: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class OrderedExecutor(Executor):
    """Runs submitted calls in submission order, several at once only when that pays.

    Calls start strictly in the order they were submitted, and their futures complete in that
    order too (a call that finishes early waits for the ones before it), so the event loop sees
    the sequence a single worker thread would produce. A call may start while others run only if
    it and every running call are *long*: the previous call of the same kind (its `kind`
    attribute, else the function) took at least `parallel_from` seconds. Long calls are where
    PyTorch and NumPy spend their time outside the GIL; short ones would only trade the GIL back
    and forth. The first call of a kind always runs alone (it measures the kind).

    PyTorch's intra-op thread count is a per-thread setting (OpenMP): a call that changed it
    (`torch.set_num_threads` in a role's `initialize`) has it applied on every worker thread
    before their next call, or the same method would compute on 1 thread here and on all cores
    there, which is slower and not bit-identical.
    """

    def __init__(
        self,
        threads: int | None = None,
        *,
        parallel_from: float | None = None,
        inline_below: float | None = None,
    ):
        self.threads = default_threads() if threads is None else threads
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self.parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
        self.inline_below = INLINE_BELOW if inline_below is None else inline_below
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="flame-sim-user")
        self._cond = threading.Condition()
        self._submitted = 0  # tickets handed out
        self._started = 0  # tickets that started (in ticket order)
        self._running: dict[int, object] = {}  # ticket -> kind of the calls running now
        self._seconds: dict[object, float] = {}  # kind -> duration of its latest call
        self._order: deque[tuple[Future[Any], Future[Any]]] = deque()  # (inner, outer) FIFO
        self.overlapped = 0  # calls that started while another ran (tests, diagnostics)
        self._torch_threads: int | None = None  # the intra-op threads a call asked for
        self.inlined = 0  # calls run on the event loop (tests, diagnostics)
        self._in_flight = 0  # calls `arun` handed to a thread whose caller has not resumed

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        outer: Future[Any] = Future()
        with self._cond:
            ticket = self._submitted
            self._submitted += 1
            inner = self._pool.submit(self._run, ticket, fn, args, kwargs)
            self._order.append((inner, outer))
        inner.add_done_callback(self._release)
        return outer

    async def arun(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` for a coroutine: right here on the event loop when its kind is short (the
        previous call took under `inline_below` seconds) and no call is in flight (so it still
        runs after every call made before it), else on a worker thread. A thread hop costs more
        than such a call (many small trainers)."""
        kind = getattr(fn, "kind", fn)
        if not self._in_flight and self._seconds.get(kind, self.inline_below) < self.inline_below:
            self.inlined += 1
            started = time.perf_counter()
            try:
                return fn()
            finally:
                with self._cond:
                    self._seconds[kind] = time.perf_counter() - started
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self, fn)
        finally:
            self._in_flight -= 1

    def _long(self, kind: object) -> bool:
        return self._seconds.get(kind, 0.0) >= self.parallel_from

    def _may_start(self, ticket: int, kind: object) -> bool:
        if ticket != self._started or len(self._running) >= self.threads:
            return False
        if not self._running:
            return True
        return self._long(kind) and all(self._long(k) for k in self._running.values())

    def _run(self, ticket: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        kind = getattr(fn, "kind", fn)
        with self._cond:
            self._cond.wait_for(lambda: self._may_start(ticket, kind))
            if self._running:
                self.overlapped += 1
            self._running[ticket] = kind
            self._started += 1
            self._cond.notify_all()
        torch = sys.modules.get("torch")
        before = _intra_op_threads(torch, self._torch_threads)
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch is None:
                torch = sys.modules.get("torch")
            after = _intra_op_threads(torch, None)
            with self._cond:
                if after is not None and after != before:
                    self._torch_threads = after
                del self._running[ticket]
                self._seconds[kind] = time.perf_counter() - started
                self._cond.notify_all()

    def _release(self, _: Future[Any]) -> None:
        """Complete the outer futures of the finished calls at the head of the order."""
        done: list[tuple[Future[Any], Future[Any]]] = []
        with self._cond:
            while self._order and self._order[0][0].done():
                done.append(self._order.popleft())
        for inner, outer in done:
            if inner.cancelled():
                outer.cancel()
            elif not outer.set_running_or_notify_cancel():
                continue
            elif (exc := inner.exception()) is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(inner.result())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _intra_op_threads(torch: Any, wanted: int | None) -> int | None:
    """This thread's PyTorch intra-op thread count, set to `wanted` first if given (None when
    PyTorch is not loaded)."""
    if torch is None:
        return None
    if wanted is not None and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return int(torch.get_num_threads())
