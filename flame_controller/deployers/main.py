"""Console entry `flame-deployer [--compute ID]`: the local deployer, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal

from flame_common.logs import configure_logging
from flame_common.settings import FlameSettings
from flame_controller.deployers.app import running_deployer
from schemas.compute import DEFAULT_COMPUTE


async def _serve(settings: FlameSettings, compute_id: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_deployer(settings, compute_id):
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flame-deployer", description="Flame local deployer.")
    parser.add_argument("--compute", default=DEFAULT_COMPUTE, help="compute id served")
    args = parser.parse_args(argv)
    settings = FlameSettings()
    configure_logging(f"deployer.{args.compute}", level=settings.log_level, json=settings.log_json)
    asyncio.run(_serve(settings, args.compute))


if __name__ == "__main__":
    main()
