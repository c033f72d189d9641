"""`flame-sim <example dir>`: run a whole job locally, in-process or one process per task."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from flame_common.cli import add_version
from flame_common.logs import configure_logging
from schemas.errors import FlameError

DEFAULT_BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "mqtt": "127.0.0.1:1883",
    "p2p": "amqp://guest:guest@127.0.0.1:5672/",  # membership over RabbitMQ, payloads direct
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flame-sim",
        description="Run every task of an example's job (schema.json, job.json, dataSpec.json, "
        "modelSpec.json, <role>/main.py) in this process over the local backend, or one "
        "process per task over a real broker.",
    )
    add_version(p)
    p.add_argument("example", type=Path, help="example directory")
    p.add_argument("--rounds", type=int, help="override hyperparameters.rounds")
    p.add_argument(
        "--set",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter (VALUE parsed as JSON when it is JSON)",
    )
    p.add_argument("--backend", choices=("local", "rabbitmq", "mqtt", "p2p"), default="local")
    p.add_argument(
        "--broker",
        help="broker address of a rabbitmq (URL) or mqtt (host[:port]) run; of a p2p run, the "
        "broker of its membership side (an amqp:// URL: RabbitMQ, else MQTT)",
    )
    p.add_argument("--registry", default="dummy", help="registry sort[:uri], e.g. local:/tmp/reg")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--workdir", type=Path, help="configs and logs of a multi-process run")
    p.add_argument(
        "--preload",
        default="",
        metavar="MODULES",
        help="multi-process run: comma-separated modules (e.g. torch,flame_sdk.roles) that a "
        "fork server imports once; tasks fork from it and share that memory",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.params:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FlameError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    if args.rounds is not None:
        out["rounds"] = args.rounds
    return out


def _summary(roles: list[Any]) -> list[dict[str, Any]]:
    """The last metrics of the aggregators (of every role in a job without one)."""
    shown = [r for r in roles if "aggregator" in r.config.role] or roles
    return [
        {"role": r.config.role, "task": r.config.taskid[:12], **(r.metrics_history or [{}])[-1]}
        for r in shown
    ]


async def _run(args: argparse.Namespace) -> int:
    from flame_sdk.simulation.expand import JobOverrides
    from flame_sdk.simulation.processes import run_processes
    from flame_sdk.simulation.runner import asimulate

    sort, _, uri = args.registry.partition(":")
    registry = {"sort": sort, "uri": uri}
    hp = _hyperparameters(args)
    if args.backend == "local":
        result = await asimulate(
            args.example, hyperparameters=hp, registry=registry, timeout=args.timeout
        )
        print(json.dumps(_summary(result.roles), indent=1, default=str))
        return 0
    broker = args.broker or DEFAULT_BROKERS[args.backend]
    overrides = JobOverrides(
        job_id=f"sim-{uuid.uuid4().hex[:8]}",
        backend=args.backend,
        brokers=[{"sort": args.backend, "host": broker}],
        registry=registry,
        hyperparameters=hp,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flame-sim-"))
    preload = tuple(m for m in args.preload.split(",") if m)
    job = await run_processes(args.example, overrides, workdir, args.timeout, preload)
    failed = [t for t in job.tasks if t.process.returncode != 0]
    for task in job.tasks:
        state = "ok" if task.process.returncode == 0 else f"exit {task.process.returncode}"
        print(f"{task.role:24} {task.task_id[:12]} {state}  log: {task.log_path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    configure_logging("flame-sim", level=args.log_level, json=False)
    if not (args.example / "schema.json").is_file():
        print(f"flame-sim: {args.example} has no schema.json", file=sys.stderr)
        raise SystemExit(2)
    try:
        code = asyncio.run(_run(args))
    except FlameError as exc:
        print(f"flame-sim: {exc.message}", file=sys.stderr)
        code = 2
    except TimeoutError:
        print(f"flame-sim: the job did not finish within {args.timeout:g} s", file=sys.stderr)
        code = 1
    raise SystemExit(code)
