"""`flame-controller`: run the controller until SIGTERM/SIGINT (settings from FLAME_* env)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from flame_common.cli import require_server, service_parser
from flame_common.logs import configure_logging, get_logger
from flame_common.settings import FlameSettings
from flame_common.titles import set_title

if TYPE_CHECKING:
    from flame_controller.ports import JobStore

log = get_logger(__name__)


async def count_states(store: JobStore, period: float) -> None:
    """Every `period` s: jobs and tasks by state into `flame_jobs` / `flame_tasks`."""
    from flame_common import metrics

    while True:
        try:
            jobs, tasks = await store.state_counts()
            metrics.set_states(metrics.JOBS, jobs)
            metrics.set_states(metrics.TASKS, tasks)
        except Exception as exc:  # the store is away: the gauges keep their last values
            log.warning("job and task counts not refreshed", error=repr(exc))
        await asyncio.sleep(period)


async def serve(settings: FlameSettings) -> None:
    from flame_common import metrics
    from flame_controller.app import running_controller

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = settings.metrics_port_controller
    async with running_controller(settings) as controller:
        with metrics.serving(settings.metrics_host, port) as server:
            counting = None
            if server is not None:
                period = settings.metrics_poll_seconds
                counting = asyncio.create_task(count_states(controller.store, period))
            await stop.wait()
            log.info("shutting down")
            if counting is not None:
                counting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counting


def main(argv: list[str] | None = None) -> None:
    service_parser(
        "flame-controller",
        "Flame's controller: the single writer of jobs and tasks (TAG expansion, job state "
        "machine, event log), until SIGTERM/SIGINT.",
    ).parse_args(argv)
    require_server("flame-controller")
    set_title("flame-controller")
    settings = FlameSettings()
    configure_logging("controller", level=settings.log_level, json=settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
