"""TLS servers for tests only, beside the shared plain services (never reconfigured): a separate
RabbitMQ node with AMQPS and HTTPS management listeners, a second Mosquitto with a TLS listener,
and a TLS-terminating proxy (asyncio); all serve a `flame_common.certs` server certificate."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from flame_common.certs import LocalCerts
from flame_common.embedded import free_port
from flame_sdk.localbroker import LocalRabbit, local_rabbitmq
from tests.support.mosquitto import mosquitto


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


TlsRabbit = LocalRabbit  # AMQPS on `port`, the management API over HTTPS on `admin_port`


@contextlib.contextmanager
def tls_rabbitmq(certs: LocalCerts, directory: Path) -> Iterator[LocalRabbit]:
    """A separate RabbitMQ node (`flame_sdk.localbroker`) whose only listeners are TLS."""
    tls_files = (
        f"cacertfile = {certs.ca_file}\ncertfile = {certs.cert_file}\nkeyfile = {certs.key_file}"
    )
    with local_rabbitmq(directory, tls_files=tls_files) as rabbit:
        yield rabbit
