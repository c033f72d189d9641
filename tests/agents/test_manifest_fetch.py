"""The flamelet's one-shot HTTP client: lengths, chunked bodies, bounds, errors as OSError."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from flamelet.http import http_request
from flamelet.manifest import ManifestError, fetch_manifest
from tests.agents.helpers import ManifestServer


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[bytes], list[bytes]]]:
    """A server answering each connection with the next canned response; records requests."""
    answers: list[bytes] = []
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
        requests.append(head + (await reader.readexactly(int(length[1])) if length else b""))
        writer.write(answers.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", answers, requests
    server.close()


async def _get(url: str, limit: int = 1 << 20) -> tuple[int, str, bytes]:
    return await http_request("GET", url, timeout=5, limit=limit)


async def test_chunked_and_length_delimited_bodies(raw_server):
    url, answers, requests = raw_server
    answers.append(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    answers.append(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
    assert await _get(f"{url}/a?x=1") == (200, "text/plain", b"hello, world")
    assert await _get(url) == (404, "", b"nope")
    assert requests[0].startswith(b"GET /a?x=1 HTTP/1.1\r\n") and b"Host: 127.0.0.1:" in requests[0]


async def test_a_post_sends_its_body_with_its_length(raw_server):
    url, answers, requests = raw_server
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    sent = await http_request(
        "POST", f"{url}/log?offset=3", timeout=5, body=b"bytes", send={"K": "v"}
    )
    assert sent == (200, "", b"ok")
    head = requests[0]
    assert head.startswith(b"POST /log?offset=3 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 5\r\n" in head and b"\r\nK: v\r\n" in head
    assert head.endswith(b"\r\n\r\nbytes")


async def test_answers_over_the_limit_raise_oserror(raw_server):
    url, answers, _ = raw_server
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    answers.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"x" * 64)
    answers.append(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100)  # delimited by the close
    for _ in range(3):
        with pytest.raises(OSError, match="bytes"):
            await _get(url, limit=10)


async def test_malformed_or_truncated_answers_raise_oserror(raw_server):
    url, answers, _ = raw_server
    answers.append(b"SMTP ready\r\n\r\n")
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    for _ in range(2):
        with pytest.raises(OSError, match="malformed"):
            await _get(url)


async def test_manifest_key_goes_in_a_header(raw_server):
    url, answers, requests = raw_server
    answers.append(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ManifestError):
        await fetch_manifest(url, "j", "t", "s3cret")
    assert b"\r\nX-Flame-Task-Key: s3cret\r\n" in requests[0]
    assert requests[0].startswith(b"GET /jobs/j/t/task HTTP/1.1\r\n")  # nothing in the URL
    with pytest.raises(ManifestError, match="single line"):
        await fetch_manifest(url, "j", "t", "k\r\nX-Evil: 1")


async def test_manifest_key_errors_are_classified(manifests: ManifestServer):
    manifests.add("j2", "t2", "k", "trainer", "ok")
    with pytest.raises(ManifestError) as wrong:
        await fetch_manifest(manifests.url, "j2", "t2", "k&y=1")
    assert "401" in str(wrong.value) and not wrong.value.retryable
    manifest = await fetch_manifest(manifests.url, "j2", "t2", "k")
    assert manifest.role == "trainer" and manifest.code_zip.startswith(b"PK")
    with pytest.raises(ManifestError) as down:
        await fetch_manifest("http://127.0.0.1:9", "j2", "t2", "k", timeout=2)
    assert down.value.retryable
