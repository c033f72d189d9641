"""Console entry `flamelet --job J --task T --key K --apiserver URL`: serve one task, then exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from flame_common.cli import SETTINGS_EPILOG, add_version
from flame_common.logs import configure_logging, get_logger
from flame_common.processes import hide_from_peers
from flame_common.settings import FlameSettings
from flame_common.titles import IDLE, flamelet_title, role_title, set_title
from flamelet import warm
from flamelet.agent import Agent, TaskRef


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flamelet", description="Flame agent: runs one task.", epilog=SETTINGS_EPILOG
    )
    add_version(p)
    p.add_argument(
        "--job", default=os.environ.get("FLAME_JOB_ID"), help="job id (env FLAME_JOB_ID)"
    )
    p.add_argument(
        "--task", default=os.environ.get("FLAME_TASK_ID"), help="task id (env FLAME_TASK_ID)"
    )
    p.add_argument(
        "--key",
        default=os.environ.get("FLAME_TASK_KEY"),
        help="task key (env FLAME_TASK_KEY; keeps it out of the process list)",
    )
    p.add_argument(
        "--apiserver",
        help="apiserver URL (default: FLAME_API_URL, else FLAME_API_HOST and FLAME_API_PORT)",
    )
    p.add_argument(
        "--prefetch",
        action="store_true",
        help="fetch and unpack the task at start-up instead of on assignment "
        "(for agents started once their job is active, as deployers do)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="private work directory (default: $FLAME_HOME/work/<job>/<task>)",
    )
    return p


async def _serve(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def stop() -> None:
        task = asyncio.ensure_future(agent.shutdown("agent stopped"))
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    # Plain handlers waking the loop: `loop.add_signal_handler` costs ~1 ms per call (it
    # enumerates every signal), a noticeable share of a forked flamelet's CPU.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))
    try:
        await agent.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> None:
    options = parser()
    args = options.parse_args(argv)  # --help and --version end here, before any side effect
    hide_from_peers()  # the role code runs as our uid: our environ holds the broker login
    settings = FlameSettings()
    args.apiserver = args.apiserver or settings.apiserver_url
    missing = [f"--{n}" for n in ("job", "task", "key") if not getattr(args, n)]
    if missing:
        options.error(f"missing {', '.join(missing)}")
    if not args.apiserver.startswith(("http://", "https://")):
        options.error(f"--apiserver must be an http(s) URL, got '{args.apiserver}'")
    set_title(flamelet_title(args.job, args.task))  # `role=` joins once the task is fetched
    # Forked before logging is configured and before any loop, thread or connection exists.
    idle = role_title(IDLE, args.job, args.task)
    role = warm.WarmProcess.fork(idle) if settings.warm_start and warm.available() else None
    configure_logging("flamelet", level=settings.log_level, json=settings.log_json)
    work_dir = args.work_dir or settings.home / "work" / args.job / args.task
    task = TaskRef(args.job, args.task, args.key, args.apiserver, args.prefetch)
    agent = Agent(settings, task, work_dir, role)
    try:
        asyncio.run(_serve(agent))
    except Exception as exc:  # unreachable broker and the like: one line, non-zero exit
        get_logger(__name__).error("flamelet failed", error=str(exc) or type(exc).__name__)
        sys.exit(1)
    finally:
        if role is not None:  # unused (never assigned, stopped early): it exits on its own
            role.reap()


if __name__ == "__main__":
    main()
