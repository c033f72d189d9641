"""`flame-controller`: run the controller until SIGTERM/SIGINT (settings from FLAME_* env)."""

from __future__ import annotations

import asyncio
import signal

from flame_common.logs import configure_logging, get_logger
from flame_common.settings import FlameSettings
from flame_common.titles import set_title
from flame_controller.app import running_controller


async def serve(settings: FlameSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_controller(settings):
        await stop.wait()
        get_logger(__name__).info("shutting down")


def main() -> None:
    set_title("flame-controller")
    settings = FlameSettings()
    configure_logging("controller", level=settings.log_level, json=settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
