"""The apiserver's role-zip cache: LRU bounds, one build per key in flight, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from flame_apiserver.zipcache import ZipCache


def builder(calls: list[str], value: bytes, delay: float = 0.0):
    async def build() -> bytes:
        calls.append(value.decode())
        await asyncio.sleep(delay)
        return value

    return build


async def test_concurrent_misses_build_once_and_hits_reuse():
    cache, calls = ZipCache(), []
    gets = [cache.get("k", builder(calls, b"zip", 0.05)) for _ in range(5)]
    results = await asyncio.gather(*gets)
    assert results == [b"zip"] * 5 and calls == ["zip"]
    assert await cache.get("k", builder(calls, b"other")) == b"zip" and calls == ["zip"]


async def test_least_recently_used_is_evicted_by_count_and_by_size():
    cache, calls = ZipCache(max_entries=2, max_bytes=10), []
    await cache.get("a", builder(calls, b"aaa"))
    await cache.get("b", builder(calls, b"bbb"))
    await cache.get("a", builder(calls, b"x"))  # a is now the most recent
    await cache.get("c", builder(calls, b"ccc"))  # evicts b
    assert len(cache) == 2
    await cache.get("a", builder(calls, b"x"))
    await cache.get("b", builder(calls, b"bbb"))  # rebuilt
    assert calls == ["aaa", "bbb", "ccc", "bbb"]
    assert await cache.get("big", builder(calls, b"0123456789abc")) == b"0123456789abc"
    await cache.get("big", builder(calls, b"0123456789abc"))  # too big to keep
    assert calls[-2:] == ["0123456789abc", "0123456789abc"]


async def test_a_failed_build_is_not_cached_and_a_cancelled_caller_does_not_cancel_it():
    cache, calls = ZipCache(), []

    async def broken() -> bytes:
        raise ValueError("no code")

    with pytest.raises(ValueError, match="no code"):
        await cache.get("k", broken)
    assert len(cache) == 0
    first = asyncio.create_task(cache.get("k", builder(calls, b"zip", 0.1)))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get("k", builder(calls, b"never", 0)))
    first.cancel()
    assert await second == b"zip" and calls == ["zip"]
