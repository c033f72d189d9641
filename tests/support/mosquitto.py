"""Mosquitto brokers of a test's own on a free port (the shared one on :1883 stays untouched)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flame_common.embedded import free_port, port_open
from tests.support.wait import wait_until

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} is not installed (scripts/services.sh installs mosquitto)")
    return exe


@contextlib.contextmanager
def mosquitto(directory: Path, name: str, settings: str) -> Iterator[int]:
    """Run a Mosquitto with `settings` (config lines after its own `listener <port> 127.0.0.1`)
    and its log under `directory`; yields its port; stops it after."""
    exe = _tool("mosquitto")
    port = free_port()
    conf = directory / f"{name}.conf"
    # `user root`: a Mosquitto started as root keeps its user (it reads root's 0600 key files
    # and writes in the 0700 tmp dir); ignored when started as anyone else
    # `set_tcp_nodelay`: answers go out at once (else each waits ~40 ms for a delayed ACK)
    head = f"user root\npersistence false\nset_tcp_nodelay true\nlistener {port} 127.0.0.1\n"
    conf.write_text(head + settings)
    log = (directory / f"{name}.log").open("ab")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: proc.poll() is not None or port_open("127.0.0.1", port),
            timeout=10,
            what=f"mosquitto {name} listening on {port} (log {log.name})",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode} (log {log.name})")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass(frozen=True)
class DynsecBroker:
    """A Mosquitto with the dynamic-security plugin: no anonymous clients, `admin` its admin."""

    port: int
    admin: str
    password: str = field(repr=False)

    @property
    def admin_url(self) -> str:
        return f"mqtt://{self.admin}:{self.password}@127.0.0.1:{self.port}"


@contextlib.contextmanager
def dynsec_mosquitto(directory: Path, listener: str = "") -> Iterator[DynsecBroker]:
    """A Mosquitto 2 whose clients are those of its dynamic-security plugin (state in
    `directory`), with the admin client `mosquitto_ctrl dynsec init` makes; `listener`: more
    settings of its listener (e.g. its TLS files)."""
    if not DYNSEC_PLUGIN.is_file():
        raise RuntimeError(
            f"Mosquitto's dynamic-security plugin is not installed ({DYNSEC_PLUGIN})"
        )
    state = directory / "dynamic-security.json"
    broker_admin, password = "flame-admin", secrets.token_hex(16)
    subprocess.run(
        [_tool("mosquitto_ctrl"), "dynsec", "init", str(state), broker_admin, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    settings = (
        f"{listener}allow_anonymous false\nplugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {state}\n"
    )
    with mosquitto(directory, "mosquitto-dynsec", settings) as port:
        yield DynsecBroker(port, broker_admin, password)


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[DynsecBroker]:
    """A Mosquitto of the test's own with the dynamic-security plugin."""
    with dynsec_mosquitto(tmp_path) as broker:
        yield broker
