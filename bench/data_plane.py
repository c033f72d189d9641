"""Data-plane benchmark: model transfer over rabbitmq, FedAvg speed, aggregator memory.

Each figure is printed beside a baseline measured in the same run:
1. a 40 MB model (10M float32, `flame_sdk.wire`-encoded) trainer -> aggregator over the `rabbitmq`
   backend vs. the same bytes over raw aio-pika (one message, publisher confirms); target >= 0.5;
   both ends on this host, so a second row shows the backend's shared-memory path (a handle on
   the broker, the bytes in /dev/shm) against the same baseline;
2. FedAvg (`create_optimizer("fedavg")`) of 10 updates of 10M float32 vs. a plain in-place numpy
   add loop; target <= 1.5;
3. peak aggregator RSS growth while folding 10 streamed updates, relative to the model size,
   vs. the numpy loop holding the same base + accumulator + one update (3x is that floor);
   target <= 3x (a child process per measurement, so peaks do not mix).

Usage: python bench/data_plane.py [--amqp URL] [--rounds N]. The last line is the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid

import aio_pika
import numpy as np

from flame_sdk.backends import create_backend
from flame_sdk.backends.base import Scope

PARAMS = 10_000_000
UPDATES = 10
SHAPES = {"conv": (2_000_000,), "dense": (4_000, 1_500), "head": (2_000_000,)}  # 10M in all


def model(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {n: rng.standard_normal(s, dtype=np.float32) for n, s in SHAPES.items()}
    assert sum(a.size for a in out.values()) == PARAMS
    return out


def encode_model(weights: dict[str, np.ndarray]) -> tuple[bytes, str]:
    try:
        from flame_sdk import wire
    except ImportError:
        return b"".join(a.tobytes() for a in weights.values()), "raw numpy bytes"
    return wire.encode({"weights": weights, "dataset_size": 100}), "flame_sdk.wire"


# -- 1. transfer ----------------------------------------------------------------------------
async def backend_transfer(
    url: str, payload: bytes, rounds: int, shared_memory: bool = False
) -> list[float]:
    job = f"bench-{uuid.uuid4().hex[:8]}"
    agg = create_backend("rabbitmq", url, job, "agg", shared_memory=shared_memory)
    trainer = create_backend("rabbitmq", url, job, "trainer-1", shared_memory=shared_memory)
    got: asyncio.Queue[float] = asyncio.Queue()

    async def nothing(scope: Scope, peer: str) -> None:
        return None

    async def on_message(scope: Scope, peer: str, data: bytes) -> None:
        assert len(data) == len(payload)
        got.put_nowait(time.perf_counter())

    async def ignore(scope: Scope, peer: str, data: bytes) -> None:
        return None

    joined = asyncio.Event()

    async def on_join(scope: Scope, peer: str) -> None:
        joined.set()

    agg.bind(nothing, nothing, on_message)
    trainer.bind(on_join, nothing, ignore)
    await agg.join(Scope(job, "param", "default", "aggregator", "trainer", "agg"))
    t_scope = Scope(job, "param", "default", "trainer", "aggregator", "trainer-1")
    await trainer.join(t_scope)
    await asyncio.wait_for(joined.wait(), 10)
    times = []
    for i in range(rounds + 1):  # the first round warms up
        start = time.perf_counter()
        await trainer.send(t_scope, "agg", payload)
        end = await asyncio.wait_for(got.get(), 60)
        if i:
            times.append(end - start)
    await trainer.close()
    await agg.close()
    return times


async def raw_transfer(url: str, payload: bytes, rounds: int) -> list[float]:
    pub_conn = await aio_pika.connect(url)
    sub_conn = await aio_pika.connect(url)
    pub = await pub_conn.channel(publisher_confirms=True)
    sub = await sub_conn.channel()
    queue = await sub.declare_queue("", exclusive=True, auto_delete=True)
    got: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        assert len(message.body) == len(payload)
        got.put_nowait(time.perf_counter())

    await queue.consume(on_message, no_ack=True)
    times = []
    for i in range(rounds + 1):
        start = time.perf_counter()
        await pub.default_exchange.publish(aio_pika.Message(payload), routing_key=queue.name)
        end = await asyncio.wait_for(got.get(), 60)
        if i:
            times.append(end - start)
    await pub_conn.close()
    await sub_conn.close()
    return times


# -- 2. aggregation speed -------------------------------------------------------------------
def fedavg_seconds(base: dict[str, np.ndarray], deltas: list[dict[str, np.ndarray]]) -> float:
    from flame_sdk.optimizers import create_optimizer

    start = time.perf_counter()
    agg = create_optimizer("fedavg", {}).begin(base, 0)
    for i, delta in enumerate(deltas):
        agg.add(delta, 100 + i, 0)
    result = agg.result()
    assert result is not None
    return time.perf_counter() - start


def numpy_seconds(base: dict[str, np.ndarray], deltas: list[dict[str, np.ndarray]]) -> float:
    start = time.perf_counter()
    acc = {n: np.zeros_like(a) for n, a in base.items()}
    for delta in deltas:
        for name, a in acc.items():
            a += delta[name]
    for name, a in acc.items():
        a /= len(deltas)
        a += base[name]
    return time.perf_counter() - start


# -- 3. aggregator memory (child process) ---------------------------------------------------
def _status_bytes(field: str) -> int:
    """A /proc/self/status figure (VmRSS now, VmHWM peak of this image; ru_maxrss would include
    the parent's peak inherited across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def rss_child(kind: str) -> None:
    """Fold UPDATES streamed updates (one alive at a time) into an aggregator holding the base and
    its accumulator; print peak RSS growth / model size. Tiny warm-up runs first load the code
    (lazy imports: numpy.random, scipy's BLAS), so both children count model data only."""
    np.random.default_rng(0).standard_normal(8, dtype=np.float32)
    if kind == "fedavg":
        from flame_sdk.optimizers import create_optimizer, kernels

        optimizer = create_optimizer("fedavg", {})
        n = kernels.BLAS_MIN  # the smallest array that takes (and so imports) the BLAS path
        warm = optimizer.begin({"w": np.zeros(n, np.float32)}, 0)
        warm.add({"w": np.ones(n, np.float32)}, 3, 0)
        assert warm.result() is not None
        del warm
    before = _status_bytes("VmRSS")
    base = model(0)
    size = sum(a.nbytes for a in base.values())
    if kind == "fedavg":
        agg = optimizer.begin(base, 0)
        for i in range(UPDATES):
            agg.add(model(i + 1), 100 + i, 0)
        assert agg.result() is not None
    else:
        acc = {n: np.zeros_like(a) for n, a in base.items()}
        for i in range(UPDATES):
            delta = model(i + 1)
            for name, a in acc.items():
                a += delta[name]
            del delta
        for name, a in acc.items():
            a /= UPDATES
            a += base[name]
    peak = _status_bytes("VmHWM")
    print(json.dumps({"ratio": (peak - before) / size}))


def rss_ratio(kind: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", kind],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ratio"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-child", choices=["fedavg", "numpy"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    payload, encoding = encode_model(model(0))
    mb = len(payload) / 1e6
    backend_times, shm_times, raw_times = [], [], []
    for _ in range(2):  # interleaved so machine noise hits all alike
        raw_times += asyncio.run(raw_transfer(args.amqp, payload, args.rounds))
        backend_times += asyncio.run(backend_transfer(args.amqp, payload, args.rounds))
        shm_times += asyncio.run(backend_transfer(args.amqp, payload, args.rounds, True))
    backend_mbs = mb / statistics.median(backend_times)
    shm_mbs = mb / statistics.median(shm_times)
    raw_mbs = mb / statistics.median(raw_times)
    transfer, shared = backend_mbs / raw_mbs, shm_mbs / raw_mbs
    print(f"[1] model of {mb:.1f} MB ({encoding}), median of {len(raw_times)} sends each")
    print(f"    raw aio-pika (1 message, confirms): {raw_mbs:8.1f} MB/s")
    print(f"    rabbitmq backend (chunked frames):  {backend_mbs:8.1f} MB/s")
    print(f"    rabbitmq backend (shared memory):   {shm_mbs:8.1f} MB/s")
    print(
        f"    backend / raw = {transfer:.2f}   (target >= 0.5)   shared memory / raw = {shared:.2f}"
    )

    base = model(0)
    deltas = [model(i + 1) for i in range(UPDATES)]
    fedavg_times, plain_times = [], []
    for _ in range(3):  # interleaved, best of 3 each; the first fedavg run also loads its code
        fedavg_times.append(fedavg_seconds(base, deltas))
        plain_times.append(numpy_seconds(base, deltas))
    fedavg, plain = min(fedavg_times), min(plain_times)
    speed = fedavg / plain
    print(f"[2] aggregation of {UPDATES} updates x {PARAMS / 1e6:.0f}M float32 (best of 3)")
    print(f"    plain in-place numpy loop: {plain * 1e3:8.1f} ms")
    print(f"    fedavg optimizer:          {fedavg * 1e3:8.1f} ms")
    print(f"    fedavg / numpy = {speed:.2f}   (target <= 1.5)")
    del deltas

    mem = rss_ratio("fedavg")
    mem_numpy = rss_ratio("numpy")
    print(f"[3] peak RSS growth while aggregating {UPDATES} streamed updates / model size")
    print(f"    plain numpy loop: {mem_numpy:.3f}x   fedavg: {mem:.3f}x   (target <= 3x)")
    # Base + accumulator + the update being folded is 3.000x by construction; a few pages of
    # allocator noise move the third decimal, so the target is checked at two decimals.
    mem_ok = round(mem, 2) <= 3.0
    verdict = "PASS" if transfer >= 0.5 and speed <= 1.5 and mem_ok else "MISS"
    print(
        f"SUMMARY {verdict}: transfer {transfer:.2f}x raw (>=0.5), shared memory "
        f"{shared:.2f}x raw, fedavg {speed:.2f}x numpy "
        f"(<=1.5), aggregator RSS {mem:.3f}x model (<=3)"
    )


if __name__ == "__main__":
    main()
