"""A RabbitMQ node of its own (name, ports, data and logs in one folder) for benchmarks and tests.

`local_rabbitmq(folder)` starts `rabbitmq-server` from Debian's scripts as a second node beside the
machine's (never touching it): AMQP on `port`, the management API on `admin_port` (guest/guest,
loopback only), or with `tls_files` (`cacertfile = …` lines) AMQPS and HTTPS listeners only. It
is stopped by its node name when the block ends. `LocalRabbit.restart()` stops and starts the
application (`rabbitmqctl stop_app` / `start_app`), as an operator restarting the broker would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flame_common.embedded import free_port, port_open

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the scripts as such (the /usr/sbin wrappers su)
START_TIMEOUT = 90.0
CTL_TIMEOUT = 60.0


@dataclass(frozen=True)
class LocalRabbit:
    node: str
    port: int
    admin_port: int
    env: dict[str, str]
    tls: bool = False

    @property
    def amqp_url(self) -> str:
        scheme = "amqps" if self.tls else "amqp"
        return f"{scheme}://guest:guest@127.0.0.1:{self.port}/"

    @property
    def admin_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://guest:guest@127.0.0.1:{self.admin_port}/"

    def ctl(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`rabbitmqctl`/`rabbitmq-diagnostics` against this node only (bounded)."""
        command = [str(RABBIT_BIN / tool), "-n", self.node, *args]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=CTL_TIMEOUT, check=False
        )

    def restart(self, down: float = 3.0) -> None:
        """Stop the broker application, wait `down` seconds, start it again; raises when a step
        fails or the node does not listen again within START_TIMEOUT."""
        for step in ("stop_app", "start_app"):
            done = self.ctl("rabbitmqctl", step)
            if done.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {step} on {self.node}: {done.stderr.strip()}")
            if step == "stop_app":
                time.sleep(down)
        _wait_listening(self, None, Path(self.env["RABBITMQ_LOG_BASE"]))


def _config(port: int, admin_port: int, tls_files: str | None) -> str:
    if tls_files is None:
        return (
            f"listeners.tcp.default = 127.0.0.1:{port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {admin_port}\n"
        )
    return (
        "listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        + "".join(f"ssl_options.{line}\n" for line in tls_files.splitlines())
        + "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
        f"management.ssl.ip = 127.0.0.1\nmanagement.ssl.port = {admin_port}\n"
        + "".join(f"management.ssl.{line}\n" for line in tls_files.splitlines())
    )


def _wait_listening(rabbit: LocalRabbit, proc: subprocess.Popen[bytes] | None, logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not (port_open("127.0.0.1", rabbit.port) and port_open("127.0.0.1", rabbit.admin_port)):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"RabbitMQ node {rabbit.node} exited with {proc.returncode} ({logs})"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"RabbitMQ node {rabbit.node} not listening on {rabbit.port} and "
                f"{rabbit.admin_port} after {START_TIMEOUT:g} s ({logs})"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def local_rabbitmq(directory: Path, *, tls_files: str | None = None) -> Iterator[LocalRabbit]:
    """Start a separate RabbitMQ node under `directory`; stop it (by its node name) after."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        raise RuntimeError(f"RabbitMQ is not installed ({RABBIT_BIN}/rabbitmq-server)")
    directory.mkdir(parents=True, exist_ok=True)
    node = f"flame-{uuid.uuid4().hex[:8]}@localhost"
    port, admin_port, dist_port = free_port(), free_port(), free_port()
    (directory / "rabbitmq.conf").write_text(_config(port, admin_port, tls_files))
    (directory / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (directory / "rabbitmq-env.conf").write_text("")  # not the system node's name
    env = {
        **os.environ,
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(directory / "plugins"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    rabbit = LocalRabbit(node, port, admin_port, env, tls=tls_files is not None)
    with (directory / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(rabbit, proc, directory / "server.log")
        yield rabbit
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            rabbit.ctl("rabbitmqctl", "stop")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
