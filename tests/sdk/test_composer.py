"""Composer semantics: chaining, loops, continue functions, chain editing, threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flame_sdk.composer import Composer, ComposerError, Loop, Tasklet


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def step(self, name: str) -> Tasklet:
        def run() -> None:
            self.calls.append(name)

        return Tasklet(name, run)


async def test_chain_runs_in_order_and_sync_functions_run_in_threads() -> None:
    threads: list[str] = []
    main = threading.current_thread().name

    def sync_step() -> None:
        threads.append(threading.current_thread().name)

    async def async_step() -> None:
        threads.append(threading.current_thread().name)

    with Composer() as c:
        Tasklet("a", sync_step) >> Tasklet("b", async_step)
    await c.run()
    assert c.chain() == ["a", "b"]
    assert threads[0] != main and threads[1] == main
    assert set(c.runtimes) == {"a", "b"}


async def test_sync_functions_run_on_the_composers_executor_with_its_context() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import ContextVar

    var: ContextVar[str] = ContextVar("var", default="unset")
    seen: list[tuple[str, str]] = []

    def record() -> str:
        seen.append((threading.current_thread().name, var.get()))
        return "done"

    executor = ThreadPoolExecutor(1, thread_name_prefix="user-code")
    composer = Composer()
    composer.executor = executor
    with composer:
        first = Tasklet("a", record)
        first >> Tasklet("b", record)
    var.set("caller")
    try:
        await composer.run()
    finally:
        executor.shutdown()
    assert [value for _, value in seen] == ["caller", "caller"]
    assert all(name.startswith("user-code") for name, _ in seen)


async def test_loop_repeats_until_predicate_and_continues_after() -> None:
    rec = Recorder()
    count = {"n": 0}

    def body() -> None:
        count["n"] += 1
        rec.calls.append("body")

    with Composer() as c:
        loop = Loop(lambda: count["n"] >= 3)
        rec.step("init") >> loop(Tasklet("body", body) >> rec.step("tail")) >> rec.step("end")
    await c.run()
    # the predicate is checked after every member: the third body exits before "tail"
    assert rec.calls == ["init", "body", "tail", "body", "tail", "body", "end"]


async def test_continue_function_restarts_the_iteration() -> None:
    rec = Recorder()
    attempts = {"fetch": 0, "rounds": 0}

    def fetch() -> None:
        attempts["fetch"] += 1
        rec.calls.append("fetch")

    def work() -> None:
        attempts["rounds"] += 1
        rec.calls.append("work")

    with Composer() as c:
        f = Tasklet("fetch", fetch)
        f.set_continue_fn(lambda: attempts["fetch"] % 2 == 1)  # every other fetch "fails"
        loop = Loop(lambda: attempts["rounds"] >= 2)
        loop(f >> Tasklet("work", work))
    await c.run()
    assert rec.calls == ["fetch", "fetch", "work", "fetch", "fetch", "work"]


async def test_nested_loops() -> None:
    rec = Recorder()
    state = {"outer": 0, "inner": 0}

    def begin() -> None:
        state["inner"] = 0
        rec.calls.append("begin")

    def inner() -> None:
        state["inner"] += 1
        rec.calls.append("inner")

    def finish() -> None:
        state["outer"] += 1
        rec.calls.append("finish")

    with Composer() as c:
        outer_loop = Loop(lambda: state["outer"] >= 2)
        inner_loop = Loop(lambda: state["inner"] >= 2)
        (
            rec.step("init")
            >> outer_loop(
                Tasklet("begin", begin)
                >> inner_loop(Tasklet("inner", inner) >> rec.step("pad"))
                >> Tasklet("finish", finish)
            )
            >> rec.step("done")
        )
    await c.run()
    one = ["begin", "inner", "pad", "inner", "finish"]
    assert rec.calls == ["init", *one, *one, "done"]


async def test_insert_at_loop_boundaries_joins_the_loop() -> None:
    rec = Recorder()
    n = {"i": 0}

    def body() -> None:
        n["i"] += 1
        rec.calls.append("body")

    with Composer() as c:
        loop = Loop(lambda: n["i"] >= 2)
        rec.step("init") >> loop(Tasklet("body", body)) >> rec.step("end")
        c.get_tasklet("body").insert_before(rec.step("pre"))
        c.get_tasklet("body").insert_after(rec.step("post"))
    assert c.chain() == ["init", "pre", "body", "post", "end"]
    await c.run()
    assert rec.calls == ["init", "pre", "body", "post", "pre", "body", "end"]


async def test_replace_and_remove() -> None:
    rec = Recorder()
    with Composer() as c:
        n = {"i": 0}
        loop = Loop(lambda: n["i"] >= 1)

        def last() -> None:
            n["i"] += 1
            rec.calls.append("last")

        rec.step("a") >> loop(rec.step("b") >> rec.step("c") >> Tasklet("d", last))
        c.get_tasklet("c").replace_with(rec.step("c2"))
        with pytest.raises(ComposerError, match="loop boundary"):
            c.get_tasklet("b").remove()
        c.get_tasklet("c2").remove()
        c.get_tasklet("d").replace_with(Tasklet("d2", last))
    assert c.chain() == ["a", "b", "d2"]
    await c.run()
    assert rec.calls == ["a", "b", "last"]
    with pytest.raises(ComposerError, match="no tasklet"):
        c.get_tasklet("c")


async def test_unlink_and_rechain() -> None:
    rec = Recorder()
    with Composer() as c:
        rec.step("a") >> rec.step("b") >> rec.step("c")
    with c:
        c.unlink()
        c.tasklet("c") >> c.tasklet("a") >> c.tasklet("b")
    await c.run()
    assert rec.calls == ["c", "a", "b"]


async def test_siblings_run_concurrently() -> None:
    started = asyncio.Event()

    async def waiter() -> None:
        await asyncio.wait_for(started.wait(), 5)

    async def setter() -> None:
        started.set()

    with Composer() as c:
        Tasklet("a", lambda: None) >> [Tasklet("w", waiter), Tasklet("s", setter)]
    await asyncio.wait_for(c.run(), 10)


def test_construction_errors() -> None:
    with pytest.raises(ComposerError, match="outside"):
        Tasklet("x", lambda: None)
    with Composer():
        a = Tasklet("a", lambda: None)
        with pytest.raises(ComposerError, match="already exists"):
            Tasklet("a", lambda: None)
        b, d = Tasklet("b", lambda: None), Tasklet("d", lambda: None)
        a >> b
        with pytest.raises(ComposerError, match="fork"):
            a >> d


async def test_failure_in_a_tasklet_propagates() -> None:
    def boom() -> None:
        raise ValueError("boom")

    with Composer() as c:
        Tasklet("a", boom) >> Tasklet("b", lambda: None)
    with pytest.raises(ValueError, match="boom"):
        await c.run()
