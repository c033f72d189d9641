"""TLS servers for tests only, beside the shared plain services (never reconfigured): a separate
RabbitMQ node with AMQPS and HTTPS management listeners, a second Mosquitto with a TLS listener,
and a TLS-terminating proxy (asyncio); all serve a `flame_common.certs` server certificate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flame_common.certs import LocalCerts
from flame_common.embedded import free_port, port_open
from tests.support.mosquitto import mosquitto
from tests.support.wait import wait_until


def server_context(certs: LocalCerts) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    return context


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError, ssl.SSLError):
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
    sink.close()


class TlsProxy:
    """Accepts TLS on 127.0.0.1:`port` and forwards the plain bytes to 127.0.0.1:`upstream`;
    `accepted` counts the TLS connections it took."""

    def __init__(self, certs: LocalCerts, upstream: int) -> None:
        self.context, self.upstream = server_context(certs), upstream
        self.port = free_port()
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.failure: BaseException | None = None
        self.accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    async def _serve(self) -> None:
        self.stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self.context)
        self.ready.set()
        async with server:
            await self.stop.wait()

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by tls_proxy, which waits for `ready`
            self.failure = exc
            self.ready.set()


@contextlib.contextmanager
def tls_proxy(certs: LocalCerts, upstream: int) -> Iterator[TlsProxy]:
    """A TLS-terminating proxy (its own thread and loop) in front of 127.0.0.1:`upstream`.
    Clients verify its certificate against `certs.ca_file`."""
    proxy = TlsProxy(certs, upstream)
    thread = threading.Thread(target=proxy.run, name="tls-proxy", daemon=True)
    thread.start()
    if not proxy.ready.wait(10) or proxy.failure is not None:
        raise RuntimeError(f"the TLS proxy did not start on port {proxy.port}: {proxy.failure}")
    try:
        yield proxy
    finally:
        if proxy.stop is not None:
            proxy.loop.call_soon_threadsafe(proxy.stop.set)
        thread.join(10)


@contextlib.contextmanager
def tls_mosquitto(certs: LocalCerts, directory: Path) -> Iterator[int]:
    """A second Mosquitto whose only listener is TLS (the shared one on :1883 stays untouched);
    yields its port."""
    with mosquitto(
        directory, "mosquitto-tls", f"{tls_listener(certs)}allow_anonymous true\n"
    ) as port:
        yield port


def tls_listener(certs: LocalCerts) -> str:
    """The settings of a Mosquitto listener serving TLS with `certs`."""
    return f"cafile {certs.ca_file}\ncertfile {certs.cert_file}\nkeyfile {certs.key_file}\n"


RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the scripts as such (the /usr/sbin wrappers su)


@dataclass(frozen=True)
class TlsRabbit:
    """A RabbitMQ node of its own: AMQPS on `port`, the management API over HTTPS on
    `admin_port` (guest/guest, loopback only)."""

    node: str
    port: int
    admin_port: int
    env: dict[str, str]

    def ctl(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`rabbitmqctl`/`rabbitmq-diagnostics` against this node only."""
        command = [str(RABBIT_BIN / tool), "-n", self.node, *args]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )


@contextlib.contextmanager
def tls_rabbitmq(certs: LocalCerts, directory: Path) -> Iterator[TlsRabbit]:
    """Start a separate RabbitMQ node (own name, ports, data and logs under `directory`) whose
    only listeners are TLS; stop it (by its node name) after."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        raise RuntimeError(f"RabbitMQ is not installed ({RABBIT_BIN}/rabbitmq-server)")
    directory.mkdir(parents=True, exist_ok=True)
    node = f"flame-tls-{uuid.uuid4().hex[:8]}@localhost"
    port, admin_port, dist_port = free_port(), free_port(), free_port()
    tls_files = (
        f"cacertfile = {certs.ca_file}\ncertfile = {certs.cert_file}\nkeyfile = {certs.key_file}"
    )
    (directory / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        + "".join(f"ssl_options.{line}\n" for line in tls_files.splitlines())
        + "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
        f"management.ssl.ip = 127.0.0.1\nmanagement.ssl.port = {admin_port}\n"
        + "".join(f"management.ssl.{line}\n" for line in tls_files.splitlines())
    )
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
    rabbit = TlsRabbit(node, port, admin_port, env)
    log = (directory / "server.log").open("ab")
    proc = subprocess.Popen(
        [str(RABBIT_BIN / "rabbitmq-server")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: (
                proc.poll() is not None
                or (port_open("127.0.0.1", port) and port_open("127.0.0.1", admin_port))
            ),
            timeout=90,
            what=f"RabbitMQ node {node} listening on {port} and {admin_port} (log {log.name})",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"RabbitMQ node {node} exited with {proc.returncode} ({log.name})")
        yield rabbit
    finally:
        rabbit.ctl("rabbitmqctl", "stop")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
