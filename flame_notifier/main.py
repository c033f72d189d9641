"""Console entry `flame-notifier`: run the notifier until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from flame_common.cli import require_server, service_parser
from flame_common.logs import configure_logging
from flame_common.settings import FlameSettings
from flame_common.titles import set_title


async def _serve(settings: FlameSettings) -> None:
    from flame_common import metrics
    from flame_notifier.app import running_notifier

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_notifier(settings):
        with metrics.serving(settings.metrics_host, settings.metrics_port_notifier):
            await stop.wait()


def main(argv: list[str] | None = None) -> None:
    service_parser(
        "flame-notifier",
        "Flame's notifier: agent registration, heartbeats, delivery of assignments and stops, "
        "until SIGTERM/SIGINT.",
    ).parse_args(argv)
    require_server("flame-notifier")
    set_title("flame-notifier")
    settings = FlameSettings()
    configure_logging("notifier", level=settings.log_level, json=settings.log_json)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
