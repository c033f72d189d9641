"""Job latency on the local stack: start -> first task running, start -> all 10 tasks completed,
against the bare cost of starting the same 10 Python processes (no-op role code) in the same run.

Usage: python bench/job_latency.py [--runs 3] [--timeline] [--cpu]   (needs RabbitMQ on :5672)
Starts its own stack with `flame up` in a temporary FLAME_HOME (embedded MongoDB, own namespace;
`flame_sdk.localstack`) and stops it with `flame down`; the role code is `noop_role.py`. `--cpu`
prints the CPU seconds each part of the stack spent per job (median over the runs; `workers` =
flamelets and their role code, `roles (bare)` = the same role code started bare). The key figure,
the ratio, is printed last (target <= 2).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from flame_common.settings import FlameSettings
from flame_sdk.client import FlameClient
from flame_sdk.localstack import (
    LocalStack,
    create_job,
    delete_namespace,
    job_events,
    local_stack,
    wait_state,
)
from schemas.events import EventBase, TaskStatusChangedEvent

TASKS = 10  # the two-tier design with 9 trainer datasets + 1 aggregator
ROOT = Path(__file__).resolve().parents[1]
NOOP = Path(__file__).resolve().parent / "noop_role.py"
STEPS = ["worker.created", "agent.registered", "task.assigned", "task.running", "task.completed"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_processes(work: Path) -> tuple[float, float]:
    """Wall time and CPU time to start and finish 10 `python main.py config` processes at once."""
    config = work / "config"
    config.write_text(json.dumps({"role": "trainer", "taskid": "bare"}))
    script = NOOP
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, str(script), str(config)], stdout=subprocess.DEVNULL)
        for _ in range(TASKS)
    ]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0, _children_cpu() - cpu0


def _cpu(proc: psutil.Process, *, children: bool = False) -> float:
    """CPU seconds of `proc` (plus of its reaped descendants when `children`)."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def _reaped(proc: psutil.Process) -> float:
    """CPU seconds of the reaped descendants of `proc` only."""
    return _cpu(proc, children=True) - _cpu(proc)


def _broker() -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    return None


def cpu_probes(stack: LocalStack) -> dict[str, Callable[[], float]]:
    """CPU-time readers of each part of the stack (the broker is shared with other users)."""
    probes: dict[str, Callable[[], float]] = {}
    for part in ("mongo", "apiserver", "controller", "notifier", "deployer"):
        proc = psutil.Process(stack.pid(part))
        probes[part] = functools.partial(_cpu, proc)
    zygote = stack.zygote()
    if zygote is not None:
        probes["zygote"] = functools.partial(_cpu, zygote)
        probes["workers"] = functools.partial(_reaped, zygote)
    broker = _broker()
    if broker is not None:
        probes["rabbitmq"] = functools.partial(_cpu, broker)
    return probes


def nine_trainer_example(tmp: Path) -> str:
    """The two-tier example's design with a dataSpec of 9 trainer datasets."""
    src = ROOT / "examples" / "two_tier_fedavg"
    dst = tmp / "examples" / "two_tier10"
    dst.mkdir(parents=True)
    (dst / "schema.json").write_text((src / "schema.json").read_text())
    ids = [uuid.uuid4().hex[:24] for _ in range(TASKS - 1)]
    (dst / "dataSpec.json").write_text(
        json.dumps([{"role": "trainer", "datasetGroups": {"default": ids}}])
    )
    return str(dst)


def _key(e: EventBase) -> str:
    return f"task.{e.payload.state.value}" if isinstance(e, TaskStatusChangedEvent) else e.type


def print_timeline(started: datetime, events: list[EventBase]) -> None:
    """Offsets of the job's events from the start request: first and last occurrence per type."""
    seen: dict[str, list[float]] = {}
    for e in events:
        seen.setdefault(_key(e), []).append((e.occurred_at - started).total_seconds())
    for key, offsets in sorted(seen.items(), key=lambda kv: min(kv[1])):
        print(f"  {min(offsets):7.3f} .. {max(offsets):7.3f} s  {key} (x{len(offsets)})")
    per_task: dict[str, dict[str, datetime]] = {}
    for e in events:
        if e.task_id:
            per_task.setdefault(e.task_id, {}).setdefault(_key(e), e.occurred_at)
    for a, b in itertools.pairwise(STEPS):
        gaps = [(t[b] - t[a]).total_seconds() for t in per_task.values() if a in t and b in t]
        if gaps:
            print(f"  {a} -> {b}: median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s")


def trust_line(stack: LocalStack, runs: int) -> str:
    """What the measured jobs ran with: bearer tokens, and per-job broker users as the
    controller's log shows them (`job broker user created ... brokers=[...]`)."""
    log = (stack.home / "logs" / "controller.log").read_text(errors="replace")
    created = [line for line in log.splitlines() if "job broker user created" in line]
    named = r"[\"'](mqtt|rabbitmq)[\"']"
    brokers = sorted({b for line in created for b in re.findall(named, line)})
    users = f"{len(created)}/{runs} jobs on {', '.join(brokers) or 'none'}"
    return f"trust: API calls with a bearer token; per-job broker users: {users}"


async def one_job(client: FlameClient, example_dir: str, timeline: bool) -> tuple[float, float]:
    job_id = await create_job(client, Path(example_dir), {"trainer": NOOP, "aggregator": NOOP})
    started = datetime.now().astimezone()
    await client.jobs.start(job_id)
    status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 120)
    if status.state.value != "completed":
        raise SystemExit(f"job ended {status.state.value}: {status.reason}")
    events = await job_events(client, job_id)
    changes = [e for e in events if isinstance(e, TaskStatusChangedEvent)]
    running = min(e.occurred_at for e in changes if e.payload.state.value == "running")
    done = max(e.occurred_at for e in changes if e.payload.state.value == "completed")
    assert len({e.task_id for e in changes}) == TASKS
    if timeline:
        print_timeline(started, events)
    return (running - started).total_seconds(), (done - started).total_seconds()


async def main(runs: int, timeline: bool, cpu: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        example = nine_trainer_example(tmp)
        results: list[tuple[float, float]] = []
        bares: list[tuple[float, float]] = []
        spent: dict[str, list[float]] = {}
        with local_stack(None, tmp) as stack:
            async with stack.client() as client:
                probes = cpu_probes(stack)
                for i in range(runs):  # interleaved: both see the same machine load
                    before = {name: read() for name, read in probes.items()}
                    results.append(await one_job(client, example, i == 0 and timeline))
                    await asyncio.sleep(0.3)  # let the last reports and clean-ups settle
                    for name, read in probes.items():
                        spent.setdefault(name, []).append(read() - before[name])
                    bares.append(bare_processes(tmp))
            trust = trust_line(stack, runs)
        await delete_namespace(FlameSettings().rabbit_url, stack.namespace)  # durable queues
    if cpu:
        print("CPU seconds per job (median):")
        for name, values in spent.items():
            print(f"  {name:12} {statistics.median(values):.3f}")
        print(f"  {'roles (bare)':12} {statistics.median(b[1] for b in bares):.3f}")
    first = statistics.median(r[0] for r in results)
    total = statistics.median(r[1] for r in results)
    bare = statistics.median(b[0] for b in bares)
    print(trust)
    print(f"runs: {runs}, tasks per job: {TASKS}")
    print(f"start -> first task running:   {first:.3f} s (median)")
    print(f"start -> all tasks completed:  {total:.3f} s (median)")
    print(f"baseline, 10 bare processes:   {bare:.3f} s (median)")
    print(f"ratio all-completed / baseline: {total / bare:.1f} (target <= 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeline", action="store_true", help="print the first job's events")
    parser.add_argument("--cpu", action="store_true", help="print CPU seconds per part and job")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.timeline, args.cpu))
