"""The agent's one-shot HTTP/1.1 client (manifest GET, log POSTs): one connection a request."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from flame_common.tls import client_context

MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024  # bytes of an answer's body read at most (default)


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The verifying TLS context of the agent's requests, trusting `ca_file` (else the system's
    CAs); built once per CA file (the zygote builds the default one for every flamelet): it
    costs ~30 ms."""
    return _tls_context(ca_file)  # one cache key per CA file, however it is called


@functools.cache
def _tls_context(ca_file: str) -> ssl.SSLContext:
    return client_context(ca_file or None)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = bytearray()
        while size := int((await reader.readline()).split(b";", 1)[0].strip() or b"x", 16):
            if len(chunks) + size > limit:
                raise ValueError(f"body over {limit} bytes")
            chunks += await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF after each chunk
        while (await reader.readline()).strip():  # trailers
            pass
        return bytes(chunks)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= limit:
            raise ValueError(f"body of {length} bytes (at most {limit})")
        return await reader.readexactly(length)
    body = await reader.read(limit + 1)  # delimited by the end of the connection
    if len(body) > limit:
        raise ValueError(f"body over {limit} bytes")
    return body


async def http_request(
    method: str,
    url: str,
    *,
    accept: str = "*/*",
    timeout: float,
    send: Mapping[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "application/octet-stream",
    limit: int = MAX_BODY,
    ca_file: str = "",
) -> tuple[int, str, bytes]:
    """One HTTP/1.1 request sending the `send` headers (and `body`, if any): (status, content
    type, body of at most `limit` bytes); transport errors and malformed answers raise OSError.
    An https server's certificate must chain to `ca_file` (else to the system's CAs).

    Far cheaper than a full client for the few requests an agent makes; no proxy, no redirects.
    """
    parts = urlsplit(url)
    https = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url}")
    host = parts.hostname
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rsplit("@", 1)[-1]
    headers = {**(send or {})}
    if body is not None:
        headers |= {"Content-Type": content_type, "Content-Length": str(len(body))}
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: {accept}\r\n"
        f"Accept-Encoding: identity\r\nConnection: close\r\nUser-Agent: flamelet\r\n{extra}\r\n"
    )
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls_context(ca_file) if https else None, limit=1 << 20
        )
        try:
            writer.write(request.encode("ascii") + (body or b""))
            try:
                version, code, *_ = (await reader.readline()).decode("latin-1").split(" ", 2)
                if not version.startswith("HTTP/1."):
                    raise ValueError(version)
                answer: dict[str, str] = {}
                for _ in range(MAX_HEADERS):
                    line = (await reader.readline()).decode("latin-1").strip()
                    if not line:
                        break
                    name, _, value = line.partition(":")
                    answer[name.strip().lower()] = value.strip()
                else:
                    raise ValueError("too many headers")
                data = await _read_body(reader, answer, limit)
                return int(code), answer.get("content-type", ""), data
            except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise OSError(f"malformed HTTP response: {exc}") from None
        finally:
            writer.close()
