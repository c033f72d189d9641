"""Health check of a service without HTTP: `python -m flame_common.health <service>`.

Healthy (exit 0) when a process titled `flame-<service>` runs beside the check (same host or
container) and the service's queue has a consumer on the broker; else exit 1 naming what is
wrong. For compose health checks and the like.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import psutil

from flame_common.busnames import names
from flame_common.settings import FlameSettings


def queues(settings: FlameSettings, service: str, compute: str) -> list[str]:
    """The queues a healthy instance of `service` consumes."""
    bus = names(settings)
    return {
        "controller": [bus.command_queue, bus.queue("controller.events")],
        "notifier": [bus.queue("notifier")],
        "deployer": [bus.queue(f"deployer.{compute}")],
    }[service]


def running(service: str) -> bool:
    """A process titled `flame-<service>` runs (its title is its command line)."""
    title = f"flame-{service}"
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].split(" ", 1)[0] == title:
            return True
    return False


async def unconsumed(settings: FlameSettings, names_: list[str], timeout: float) -> list[str]:
    """The queues among `names_` that have no consumer (or do not exist)."""
    import aio_pika

    missing = []
    connection = await aio_pika.connect(settings.rabbit_url, timeout=timeout)
    async with connection:
        for name in names_:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True, timeout=timeout)
                if not queue.declaration_result.consumer_count:
                    missing.append(name)
            except aio_pika.exceptions.ChannelClosed:
                missing.append(name)
    return missing


def check(settings: FlameSettings, service: str, compute: str, timeout: float) -> str | None:
    """None when healthy, else why not."""
    if not running(service):
        return f"no process titled flame-{service} runs"
    try:
        missing = asyncio.run(unconsumed(settings, queues(settings, service, compute), timeout))
    except Exception as exc:  # any failure to ask the broker means we cannot vouch for it
        return f"RabbitMQ at {settings.rabbit_url.rsplit('@', 1)[-1]} unreachable: {exc}"
    if missing:
        return f"no consumer on {', '.join(missing)}"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flame_common.health")
    parser.add_argument("service", choices=["controller", "notifier", "deployer"])
    parser.add_argument("--compute", default="default", help="the deployer's compute")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for the broker")
    args = parser.parse_args(argv)
    problem = check(FlameSettings(), args.service, args.compute, args.timeout)
    if problem:
        print(f"unhealthy: {args.service}: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"healthy: {args.service}")


if __name__ == "__main__":
    main()
