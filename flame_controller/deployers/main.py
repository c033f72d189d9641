"""Console entry `flame-deployer [--compute ID] [--kind local|kubernetes]`: until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import TYPE_CHECKING

from flame_common.cli import SETTINGS_EPILOG, add_version, require_server
from flame_common.extras import MissingExtra, require
from flame_common.logs import configure_logging
from flame_common.settings import FlameSettings
from flame_common.titles import set_title
from schemas.compute import DEFAULT_COMPUTE

if TYPE_CHECKING:
    from flame_controller.deployers.base import Deployer


async def _serve(settings: FlameSettings, compute_id: str, deployer: Deployer | None) -> None:
    from flame_common import metrics
    from flame_controller.deployers.app import running_deployer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_deployer(settings, compute_id, deployer=deployer):
        # after the zygote started: its forks must not inherit the listening socket
        with metrics.serving(settings.metrics_host, settings.metrics_port_deployer):
            await stop.wait()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flame-deployer",
        description="Flame deployer: one worker per task of its compute.",
        epilog=SETTINGS_EPILOG,
    )
    add_version(p)
    p.add_argument("--compute", default=DEFAULT_COMPUTE, help="compute id served")
    p.add_argument(
        "--kind",
        choices=("local", "kubernetes"),
        default="local",
        help="local: flamelet processes on this machine (default); kubernetes: one Job per task",
    )
    p.add_argument("--k8s-namespace", default="flame", help="namespace of the worker Jobs")
    p.add_argument("--image", help="container image with flamelet installed (kubernetes)")
    return p


def build_deployer(args: argparse.Namespace, settings: FlameSettings) -> Deployer | None:
    """The deployer `args` ask for (None: the local default); SystemExit(2) with the reason."""
    if args.kind == "local":
        return None
    if not args.image:
        parser().error("--kind kubernetes needs --image (an image with flamelet installed)")
    try:
        require("k8s", "--kind kubernetes")
    except MissingExtra as exc:
        parser().error(str(exc))
    from flame_controller.deployers.kubernetes import KubernetesDeployer, cluster_api
    from flame_controller.deployers.pod_template import PodTemplateError, load_pod_template

    try:
        template = load_pod_template(settings.k8s_pod_template)
    except PodTemplateError as exc:
        parser().error(str(exc))
    try:
        api = cluster_api()
    except RuntimeError as exc:
        parser().error(str(exc))
    return KubernetesDeployer(
        api, settings, namespace=args.k8s_namespace, image=args.image, template=template
    )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    require_server("flame-deployer")
    settings = FlameSettings()
    deployer = build_deployer(args, settings)
    set_title(f"flame-deployer compute={args.compute} kind={args.kind}")
    configure_logging(f"deployer.{args.compute}", level=settings.log_level, json=settings.log_json)
    asyncio.run(_serve(settings, args.compute, deployer))


if __name__ == "__main__":
    main()
