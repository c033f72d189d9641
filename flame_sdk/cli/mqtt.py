"""The local stack's own Mosquitto: dynamic security on, an admin client only the controller holds.

`flame up` starts it in place of the default MQTT job broker (unless FLAME_JOB_BROKERS or
FLAME_MQTT_ADMIN_URL is set, or Mosquitto or its plugin is missing), so that jobs with
`"backend": "mqtt"` run as written on a broker no anonymous client enters: each job gets an MQTT
client limited to its topics (`flame_controller.mosquitto_accounts`). State and config live in
`$FLAME_HOME/mqtt` (0700; the admin password in a 0600 file), its log in
`$FLAME_HOME/logs/mqtt.log`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from flame_common.embedded import free_port, port_open
from flame_sdk.cli.stack_state import Stack

PART = "mqtt"
DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN = "flame-admin"
START_TIMEOUT = 15.0
JOB_BROKERS = "FLAME_JOB_BROKERS"


class MqttUnavailable(Exception):
    """Mosquitto cannot be run here (the reason says what is missing)."""


@dataclass(frozen=True)
class LocalMqtt:
    """Where the stack's Mosquitto listens and its admin login (for the controller only)."""

    port: int
    password: str = field(repr=False)

    @property
    def job_broker(self) -> dict[str, str]:
        return {"sort": "mqtt", "host": f"mqtt://127.0.0.1:{self.port}"}

    @property
    def admin_url(self) -> str:
        return f"mqtt://{ADMIN}:{self.password}@127.0.0.1:{self.port}"


def _tools() -> tuple[str, str]:
    mosquitto, ctrl = shutil.which("mosquitto"), shutil.which("mosquitto_ctrl")
    if mosquitto is None or ctrl is None:
        raise MqttUnavailable("mosquitto is not installed (apt-get install -y mosquitto)")
    if not DYNSEC_PLUGIN.is_file():
        raise MqttUnavailable(f"Mosquitto's dynamic-security plugin is missing ({DYNSEC_PLUGIN})")
    return mosquitto, ctrl


def _admin_password(directory: Path, ctrl: str) -> str:
    """The admin password, made with the plugin's state the first time (kept 0600)."""
    secret, state = directory / "admin.secret", directory / "dynamic-security.json"
    if secret.is_file() and state.is_file():
        return secret.read_text().strip()
    state.unlink(missing_ok=True)
    password = secrets.token_hex(16)
    made = subprocess.run(
        [ctrl, "dynsec", "init", str(state), ADMIN, password],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if made.returncode != 0:
        raise MqttUnavailable(f"mosquitto_ctrl dynsec init failed: {made.stderr.strip()}")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


def _config(directory: Path, port: int) -> Path:
    conf = directory / "mosquitto.conf"
    lines = [
        # a Mosquitto started as root keeps root (its 0600 files), ignored for other users
        "user root",
        "persistence false",
        # answer at once: with Nagle on, every reply waits for the client's delayed ACK (~40 ms
        # per dynamic-security request, and per data-plane message)
        "set_tcp_nodelay true",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {DYNSEC_PLUGIN}",
        f"plugin_opt_config_file {directory / 'dynamic-security.json'}",
        f"listener {port} 127.0.0.1",
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def ensure_mqtt(stack: Stack) -> LocalMqtt:
    """The stack's Mosquitto, started if it does not run (MqttUnavailable when it cannot)."""
    mosquitto, ctrl = _tools()
    directory = stack.settings.home / "mqtt"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = _admin_password(directory, ctrl)
    info = stack.info(PART) or {}
    if stack.process(PART) is not None and "port" in info:
        return LocalMqtt(int(info["port"]), password)
    port = free_port()
    proc = stack.spawn(PART, [mosquitto, "-c", str(_config(directory, port))], dict(os.environ))
    stack.record(PART, proc, port=port)
    deadline = time.monotonic() + START_TIMEOUT
    while not port_open("127.0.0.1", port):
        if not proc.is_running() or proc.status() == "zombie" or time.monotonic() > deadline:
            raise MqttUnavailable(f"mosquitto did not start:\n{stack.log_tail(PART)}")
        time.sleep(0.05)
    return LocalMqtt(port, password)


def names_mqtt(job_brokers: list[dict[str, str]]) -> bool:
    """Whether the job brokers already include an MQTT broker (then `flame up` starts none)."""
    return any(b.get("sort") == "mqtt" for b in job_brokers)
