"""Job latency on the local stack: start -> first task running, start -> all 10 tasks completed,
against the bare cost of starting the same 10 Python processes (no-op role code) in the same run.

Usage: python bench/job_latency.py [--runs 3]    (needs RabbitMQ on 127.0.0.1:5672)
Starts its own stack with `flame up` in a temporary FLAME_HOME (embedded MongoDB, own namespace)
and stops it with `flame down`. The key figure, the ratio, is printed last (target <= 2).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flame_sdk.client import FlameClient
from schemas.events import EventBase
from tests.agents.helpers import ROLES
from tests.agents.stack import create_job, job_events, local_stack, wait_state

TASKS = 10  # the mnist two-tier design with 9 trainer datasets + 1 aggregator
STEPS = ["worker.created", "agent.registered", "task.assigned", "task.running", "task.completed"]


def bare_processes(work: Path) -> float:
    """Wall time to start and finish 10 `python main.py config` processes at once."""
    config = work / "config"
    config.write_text(json.dumps({"role": "trainer", "taskid": "bare"}))
    script = ROLES / "ok" / "main.py"
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, str(script), str(config)], stdout=subprocess.DEVNULL)
        for _ in range(TASKS)
    ]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


def nine_trainer_example(tmp: Path) -> str:
    """A copy of the mnist example whose dataSpec has 9 trainer datasets."""
    src = Path(__file__).resolve().parents[1] / "tests" / "data" / "flame_examples" / "mnist"
    dst = tmp / "examples" / "mnist10"
    dst.mkdir(parents=True)
    (dst / "schema.json").write_text((src / "schema.json").read_text())
    ids = [uuid.uuid4().hex[:24] for _ in range(TASKS - 1)]
    (dst / "dataSpec.json").write_text(
        json.dumps([{"role": "trainer", "datasetGroups": {"us": ids}}])
    )
    return str(dst)


def _key(e: EventBase) -> str:
    return e.type if e.type != "task.status_changed" else f"task.{e.payload.state.value}"


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


async def one_job(client: FlameClient, example_dir: str, timeline: bool) -> tuple[float, float]:
    job_id = await create_job(client, Path(example_dir), {"trainer": "ok", "aggregator": "ok"})
    started = datetime.now().astimezone()
    await client.jobs.start(job_id)
    status = await wait_state(client, job_id, {"completed", "failed", "terminated"}, 120)
    if status.state.value != "completed":
        raise SystemExit(f"job ended {status.state.value}: {status.reason}")
    events = await job_events(client, job_id)
    changes = [e for e in events if e.type == "task.status_changed"]
    running = min(e.occurred_at for e in changes if e.payload.state.value == "running")
    done = max(e.occurred_at for e in changes if e.payload.state.value == "completed")
    assert len({e.task_id for e in changes}) == TASKS
    if timeline:
        print_timeline(started, events)
    return (running - started).total_seconds(), (done - started).total_seconds()


async def main(runs: int, timeline: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        example = nine_trainer_example(tmp)
        results: list[tuple[float, float]] = []
        bares: list[float] = []
        with local_stack(None, tmp) as stack:
            async with stack.client() as client:
                for i in range(runs):  # interleaved: both see the same machine load
                    results.append(await one_job(client, example, i == 0 and timeline))
                    bares.append(bare_processes(tmp))
    first = statistics.median(r[0] for r in results)
    total = statistics.median(r[1] for r in results)
    bare = statistics.median(bares)
    print(f"runs: {runs}, tasks per job: {TASKS}")
    print(f"start -> first task running:   {first:.3f} s (median)")
    print(f"start -> all tasks completed:  {total:.3f} s (median)")
    print(f"baseline, 10 bare processes:   {bare:.3f} s (median)")
    print(f"ratio all-completed / baseline: {total / bare:.1f} (target <= 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeline", action="store_true", help="print the first job's events")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.timeline))
