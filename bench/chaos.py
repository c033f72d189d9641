"""Chaos matrix: the digits two-tier and hierarchical jobs on a local stack, one fault per cell.

Usage: python bench/chaos.py [--quick] [--jobs two_tier,hierarchical] [--faults controller,...]
                             [--moments before-start,...] [--rounds 40]   (needs RabbitMQ on :5672)

One `flame up` stack (embedded MongoDB, own namespace and FLAME_HOME, heartbeat timeout 3 s) runs
every cell. A fault-free run of each job first gives its reference accuracy and time. Each cell
then runs the job and injects one fault at one moment:

- faults: kill -9 of a service (controller, apiserver, notifier, deployer: the supervisor restarts
  it), of a trainer's flamelet, of a trainer's / the middle / the top aggregator's role process;
  a RabbitMQ restart (`rabbitmqctl stop_app`, 3 s, `start_app`; the stack runs on a RabbitMQ node
  of the bench's own, `flame_sdk.localbroker`, so the machine's broker is never touched);
  MongoDB (nx-27017) kill -9 and restart on the same data after 2 s; `controller2`: a second
  controller joins the namespace before the job and the first one is killed (the second must
  take its partitions over).
- moments: before-start (after the job is created), deploying (right after start), mid-round (the
  top evaluated round 2), aggregation (a trainer reported round 3: the top is aggregating it),
  end (the top evaluated round R-10: its last quarter). Role and flamelet faults apply once roles
  run. Rounds are made long enough to aim at (40 rounds of 20 local epochs; `--rounds`).

Per cell: outcome (completed / failed / terminated with its reason, or hung), the final accuracy
where it completed (the reference's within 2e-3 — the workload is deterministic — or, when a
participant was killed and the job went on without it for some rounds, within 0.02), seconds from
start to end, events lost (gaps in the job log's seq), duplicated (repeated event ids or the same
task status twice in one run), orphan processes (flamelets / role code of the job alive 20 s after
its end), leaked queues and broker users (the job's data-plane queues, its agents' inboxes, its
broker user). A cell is ok when the job completed with the reference accuracy, or failed with a
reason within the heartbeat timeout + 30 s of the fault, with nothing lost, duplicated, orphaned or
leaked. The default matrix is every applicable (fault, moment) of the two-tier job plus every fault
at mid-round of the hierarchical one; `--quick`: mid-round only. The summary is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from flame_common.embedded import port_open
from flame_common.titles import FLAMELET, ROLE
from flame_sdk.cli.services import SERVICES, command
from flame_sdk.client import FlameClient
from flame_sdk.localbroker import LocalRabbit, local_rabbitmq
from flame_sdk.localstack import QUICK, LocalStack, create_example_job, local_stack
from schemas.events import EventBase, JobStateChangedEvent, TaskStatusChangedEvent
from schemas.states import JobState

ROOT = Path(__file__).resolve().parents[1]
JOBS = {
    "two_tier": (ROOT / "examples" / "two_tier_fedavg", "aggregator"),
    "hierarchical": (ROOT / "examples" / "hierarchical", "top-aggregator"),
}
SERVICE_FAULTS = ("controller", "apiserver", "notifier", "deployer")
PLATFORM_FAULTS = (*SERVICE_FAULTS, "rabbitmq", "mongo", "controller2")
ROLE_FAULTS = ("flamelet", "trainer", "middle", "top")
MOMENTS = ("before-start", "deploying", "mid-round", "aggregation", "end")
RUNNING_MOMENTS = ("mid-round", "aggregation", "end")
HEARTBEAT_TIMEOUT = float(QUICK["FLAME_HEARTBEAT_TIMEOUT"])  # the stack's (localstack.QUICK)
ACCURACY_TOLERANCE = 2e-3  # platform faults: the deterministic workload's own result
# a participant killed: the job goes on without it for some rounds (less data, another model)
DEGRADED_TOLERANCE = 0.02
EPOCHS = 20  # local epochs per round: rounds long enough (~0.3 s) to aim a fault inside one
SETTLE = 20.0  # seconds a finished job gets to leave no process, queue or user behind
MOMENT_TIMEOUT = 120.0
END_ROUNDS = 10  # "end": the last quarter (what the bench sees lags the roles by up to ~1 s)
GUEST = ("guest", "guest")


@dataclass(frozen=True)
class Cell:
    job: str
    fault: str
    moment: str

    def __str__(self) -> str:
        return f"{self.job:<13} {self.fault:<11} {self.moment:<12}"


@dataclass
class Result:
    cell: Cell
    outcome: str = "hung"
    reason: str = ""
    accuracy: float | None = None
    seconds: float = 0.0
    fault_to_end: float = 0.0
    lost: int = 0
    duplicated: int = 0
    orphans: int = 0
    leaked: int = 0
    notes: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class Reference:
    accuracy: float
    seconds: float


# --- the stack's processes ---------------------------------------------------------------------


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def job_processes(job_id: str, prefix: str, role: str | None = None) -> list[psutil.Process]:
    """Live flamelets (`prefix` FLAMELET) or role processes (ROLE) of the job, by title."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = " ".join(proc.info["cmdline"] or [])
        if not args.startswith(prefix) or f"job={job_id}" not in args:
            continue
        if role is None or f" {role} " in f" {args} " or f"role={role}" in args:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
    return found


def restart_mongo(stack: LocalStack) -> None:
    """kill -9 the stack's nx-27017, then start it again on its data (same argv, same port)."""
    pidfile = stack.home / "run" / "mongo.pid"
    info = json.loads(pidfile.read_text())
    proc = psutil.Process(int(info["pid"]))
    argv, env = proc.cmdline(), proc.environ()
    kill9(proc.pid)
    proc.wait(10)
    time.sleep(2)
    with open(stack.home / "logs" / "mongo.log", "ab") as log:
        new = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    created = psutil.Process(new.pid).create_time()
    pidfile.write_text(json.dumps({**info, "pid": new.pid, "started": created}))
    port = int(argv[argv.index("-p") + 1])
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError("nx-27017 did not come back within 30 s")
        time.sleep(0.1)


def second_controller(stack: LocalStack) -> subprocess.Popen[bytes]:
    """Another controller on the stack's namespace, with the first one's settings and secrets."""
    (controller,) = [s for s in SERVICES if s.name == "controller"]
    env = psutil.Process(stack.pid("controller")).environ()
    log = open(stack.home / "logs" / "controller2.log", "ab")  # noqa: SIM115 (closed by the OS)
    return subprocess.Popen(
        command(controller), env=env, stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


# --- one cell ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What every cell runs on: the stack, its own RabbitMQ node, a client, the rounds."""

    stack: LocalStack
    rabbit: LocalRabbit
    client: FlameClient
    rounds: int


class Run:
    """One job through the stack with one fault."""

    def __init__(self, bench: Bench, cell: Cell) -> None:
        self.bench, self.cell = bench, cell
        self.stack, self.client, self.rounds = bench.stack, bench.client, bench.rounds
        self.folder, self.top = JOBS[cell.job]
        self.job_id = ""
        self.extra: subprocess.Popen[bytes] | None = None
        self.fault_at = 0.0

    async def top_round(self) -> int:
        rows = await self.client.jobs.metrics(self.job_id, role=self.top)
        return max((r.round for r in rows if "test_accuracy" in r.metrics), default=0)

    async def trainer_round(self) -> int:
        rows = await self.client.jobs.metrics(self.job_id, role="trainer")
        return max((r.round for r in rows), default=0)

    async def reach(self, moment: str) -> bool:
        """Wait for `moment` (before-start and deploying are where the caller is); False when the
        job ended (or did not get there in time) first."""
        targets: dict[str, Callable[[], Awaitable[bool]]] = {
            "mid-round": lambda: self._at_least(self.top_round, 2),
            "aggregation": lambda: self._at_least(self.trainer_round, 3),
            "end": lambda: self._at_least(self.top_round, self.rounds - END_ROUNDS),
        }
        if moment not in targets:
            return True
        deadline = time.monotonic() + MOMENT_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the fault of a previous step may be healing
                if await targets[moment]():
                    return True
                if (await self.client.jobs.status(self.job_id)).state.is_terminal:
                    return False
            await asyncio.sleep(0.05)
        return False

    @staticmethod
    async def _at_least(read: Callable[[], Awaitable[int]], value: int) -> bool:
        return await read() >= value

    async def inject(self) -> None:
        fault, job = self.cell.fault, self.job_id
        self.fault_at = time.monotonic()
        if fault in SERVICE_FAULTS:
            kill9(self.stack.pid(fault))
        elif fault == "controller2":
            kill9(self.stack.pid("controller"))
        elif fault == "mongo":
            await asyncio.to_thread(restart_mongo, self.stack)
        elif fault == "rabbitmq":
            await asyncio.to_thread(self.bench.rabbit.restart)
        else:
            prefix = FLAMELET if fault == "flamelet" else ROLE
            role = {"flamelet": "trainer", "trainer": "trainer", "middle": "middle-aggregator"}
            victims = job_processes(job, prefix, role.get(fault, self.top))
            if not victims:
                raise RuntimeError(f"no {fault} process of job {job} to kill")
            kill9(victims[0].pid)

    async def run(self, ref: Reference | None) -> Result:
        result = Result(self.cell)
        moment = self.cell.moment
        self.job_id = await self._with_retries(
            lambda: create_example_job(
                self.client,
                self.folder,
                hyperparameters={"rounds": self.rounds, "epochs": EPOCHS},
                max_run_time=600,
            )
        )
        if self.cell.fault == "controller2":
            self.extra = second_controller(self.stack)
            await asyncio.sleep(3)  # it joins the partitions' consumers
        start = time.monotonic()
        try:
            if moment == "before-start":
                await self.inject()
            await self._with_retries(lambda: self.client.jobs.start(self.job_id))
            start = time.monotonic()
            if moment != "before-start" and self.cell.fault != "none":
                if await self.reach(moment):
                    await self.inject()
                else:
                    result.notes.append(f"the job ended before '{moment}': fault not injected")
            status = await self._wait_end(ref)
            result.seconds = time.monotonic() - start
            if status is not None:
                result.outcome, result.reason = status
                result.fault_to_end = time.monotonic() - (self.fault_at or start)
            result.accuracy = await self._with_retries(self._accuracy)
            events = await self._with_retries(self._events)
            result.lost, result.duplicated = gaps(events), duplicates(events)
            result.orphans, result.leaked = await self._leftovers(result.outcome != "hung")
        finally:
            if self.extra is not None:
                self.extra.kill()
                self.extra.wait()
        result.ok = judge(result, ref)
        return result

    async def _wait_end(self, ref: Reference | None) -> tuple[str, str] | None:
        bound = 3 * (ref.seconds if ref else 60) + HEARTBEAT_TIMEOUT + 90
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status = await self.client.jobs.status(self.job_id)
                if status.state.is_terminal:
                    return status.state.value, status.reason
            await asyncio.sleep(0.2)
        return None

    async def _accuracy(self) -> float | None:
        rows = await self.client.jobs.metrics(self.job_id, role=self.top)
        final = [r for r in rows if r.round == self.rounds and "test_accuracy" in r.metrics]
        return final[-1].metrics["test_accuracy"] if final else None

    async def _events(self) -> list[EventBase]:
        return [e async for e in self.client.jobs.events(self.job_id)]

    async def _leftovers(self, ended: bool) -> tuple[int, int]:
        """(orphan processes, leaked queues and users) once they had SETTLE seconds to go."""
        tasks = [t.task_id for t in await self._with_retries(self._tasks)]
        deadline = time.monotonic() + (SETTLE if ended else 1)
        while True:
            orphans = job_processes(self.job_id, FLAMELET) + job_processes(self.job_id, ROLE)
            leaked = await asyncio.to_thread(leaked_broker_objects, self.bench, self.job_id, tasks)
            if (not orphans and not leaked) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        for proc in orphans:  # clean up for the next cell
            kill9(proc.pid)
        return len(orphans), len(leaked)

    async def _tasks(self) -> list[Any]:
        return await self.client.tasks.list(self.job_id, limit=1000)

    @staticmethod
    async def _with_retries(call: Callable[[], Awaitable[Any]], seconds: float = 60) -> Any:
        """A control-plane call through a fault that is healing (apiserver restarting, ...)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return await call()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


def leaked_broker_objects(bench: Bench, job_id: str, task_ids: list[str]) -> list[str]:
    """The job's data-plane queues, its agents' inboxes and its broker user still on RabbitMQ."""
    namespace = bench.stack.namespace
    inboxes = {f"{namespace}.agent.{t}" for t in task_ids}
    api = f"http://127.0.0.1:{bench.rabbit.admin_port}/api"
    with httpx.Client(auth=GUEST, timeout=10) as http:
        queues = [q["name"] for q in http.get(f"{api}/queues", params={"columns": "name"}).json()]
        users = [u["name"] for u in http.get(f"{api}/users").json()]
    left = [q for q in queues if job_id in q or q in inboxes]
    return left + [u for u in users if u == f"{namespace}.job.{job_id}"]


def gaps(events: list[EventBase]) -> int:
    """Sequence numbers missing from the log (1..last)."""
    seqs = sorted({e.seq or 0 for e in events})
    return (seqs[-1] - len(seqs)) if seqs else 0


def duplicates(events: list[EventBase]) -> int:
    """Events logged twice: a repeated id, or a task's same status twice within one run."""
    ids = Counter(e.id for e in events)
    repeated = sum(n - 1 for n in ids.values())
    seen: set[tuple[int, str, str]] = set()
    run = 0
    for e in events:
        if isinstance(e, JobStateChangedEvent) and e.payload.to_state is JobState.STARTING:
            run += 1
        if isinstance(e, TaskStatusChangedEvent):
            key = (run, e.task_id or "", e.payload.state.value)
            repeated += key in seen
            seen.add(key)
    return repeated


def judge(result: Result, ref: Reference | None) -> bool:
    if result.lost or result.duplicated or result.orphans or result.leaked:
        return False
    if result.outcome == "completed":
        tolerance = DEGRADED_TOLERANCE if result.cell.fault in ROLE_FAULTS else ACCURACY_TOLERANCE
        return ref is None or (
            result.accuracy is not None and abs(result.accuracy - ref.accuracy) <= tolerance
        )
    if result.outcome in ("failed", "terminated"):
        return bool(result.reason) and result.fault_to_end <= HEARTBEAT_TIMEOUT + 30
    return False


def describe(r: Result, ref: Reference | None) -> str:
    acc = f"acc {r.accuracy:.4f}" if r.accuracy is not None else "acc -     "
    acc += f" (ref {ref.accuracy:.4f})" if ref else ""
    outcome = r.outcome + (f": {r.reason[:60]}" if r.reason and r.outcome != "completed" else "")
    line = (
        f"{r.cell}  {outcome:<24} {acc}  {r.seconds:6.1f} s  lost {r.lost}  dup {r.duplicated}"
        f"  orphans {r.orphans}  leaked {r.leaked}  {'ok' if r.ok else 'NOT OK'}"
    )
    return line + "".join(f"\n    note: {n}" for n in r.notes)


def matrix(args: argparse.Namespace) -> list[Cell]:
    cells = []
    for job in args.jobs:
        faults = [f for f in args.faults if f != "middle" or job == "hierarchical"]
        for fault in faults:
            moments = ["mid-round"] if args.quick or job == "hierarchical" else args.moments
            if fault in ROLE_FAULTS:
                moments = [m for m in moments if m in RUNNING_MOMENTS]
            cells += [Cell(job, fault, m) for m in moments if m in args.moments]
    return cells


async def main(args: argparse.Namespace) -> int:
    cells = matrix(args)
    print(f"chaos matrix: {len(cells)} cells, {args.rounds} rounds per job", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="flame-chaos-") as tmp,
        local_rabbitmq(Path(tmp) / "rabbit") as rabbit,
        local_stack(
            None,
            Path(tmp),
            f"chaos{uuid.uuid4().hex[:8]}",
            FLAME_METRICS_INTERVAL="0.1",
            FLAME_RABBIT_URL=rabbit.amqp_url,
            FLAME_RABBIT_ADMIN_URL=rabbit.admin_url,
            FLAME_JOB_BROKERS=json.dumps([{"sort": "rabbitmq", "host": rabbit.amqp_url}]),
        ) as stack,
    ):
        refs: dict[str, Reference] = {}
        async with stack.client() as client:
            bench = Bench(stack, rabbit, client, args.rounds)
            for job in args.jobs:
                r = await Run(bench, Cell(job, "none", "-")).run(None)
                if r.outcome != "completed" or r.accuracy is None:
                    print(f"reference run of {job} did not complete: {describe(r, None)}")
                    return 1
                refs[job] = Reference(r.accuracy, r.seconds)
                print(f"reference {job}: accuracy {r.accuracy:.4f}, {r.seconds:.1f} s")
            results = []
            for cell in cells:
                try:
                    result = await Run(bench, cell).run(refs[cell.job])
                except Exception as exc:  # the bench goes on; the cell is not ok
                    result = Result(cell, outcome="error", notes=[repr(exc)])
                results.append(result)
                print(describe(result, refs[cell.job]), flush=True)
                heal(bench)
    ok = sum(r.ok for r in results)
    print(
        f"cells ok {ok}/{len(results)}; lost {sum(r.lost for r in results)}; "
        f"duplicated {sum(r.duplicated for r in results)}; "
        f"hung {sum(r.outcome == 'hung' for r in results)}; "
        f"orphans {sum(r.orphans for r in results)}"
    )
    return 0 if ok == len(results) else 1


def heal(bench: Bench) -> None:
    """Between cells: the broker is up and services the supervisor left down come back (`flame
    up` is idempotent)."""
    bench.rabbit.ctl("rabbitmqctl", "await_startup")
    result = bench.stack.flame("up", timeout=120)
    if result.returncode != 0:
        print(f"    note: flame up between cells failed: {result.stderr.strip()[-300:]}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    def names(known: tuple[str, ...]) -> Callable[[str], list[str]]:
        def split(text: str) -> list[str]:
            chosen = [x for x in text.split(",") if x]
            unknown = sorted(set(chosen) - set(known))
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
            return chosen

        return split

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=names(tuple(JOBS)), default=list(JOBS))
    p.add_argument("--faults", type=names((*PLATFORM_FAULTS, *ROLE_FAULTS)))
    p.add_argument("--moments", type=names(MOMENTS), default=list(MOMENTS))
    p.add_argument("--rounds", type=int, default=40, choices=range(4, 41), metavar="4..40")
    p.add_argument("--quick", action="store_true", help="every fault at mid-round only")
    args = p.parse_args(argv)
    args.faults = args.faults or [*PLATFORM_FAULTS, *ROLE_FAULTS]
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
