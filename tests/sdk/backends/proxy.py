"""A TCP proxy in front of a real broker that a test cuts and restores: a deterministic outage."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `host`:`target_port`. `cut()` aborts every connection and
    refuses new ones (as a stopped broker would) until `restore()`; `swallow()` first makes the
    bytes on their way to the clients vanish (what a dying link had in flight)."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host, self.target_port = host, target_port
        self.port = 0
        self.cut_active = False
        self.swallowing = False
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_active:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        for source, sink, downstream in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(source, sink, link, downstream))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        downstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(1 << 16):
                if downstream and self.swallowing:
                    continue
                sink.write(data)
                await sink.drain()
        self._abort(link)

    def _abort(self, link: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._links.discard(link)
        for writer in link:
            writer.transport.abort()

    def cut(self) -> None:
        """Drop every connection at once, both ways, and refuse new ones."""
        self.cut_active = True
        for link in list(self._links):
            self._abort(link)

    def swallow(self) -> None:
        """Keep the connections but drop every byte the broker sends to the clients from now
        on (until `cut()`, which ends the connections the dropped bytes left inconsistent)."""
        self.swallowing = True

    def restore(self) -> None:
        self.cut_active = self.swallowing = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
