"""HTTP transport of the management client: JSON requests, SSE streams, error and outage mapping."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from flame_common.tls import http_verify
from flame_sdk.client.errors import error_from_response
from schemas.errors import Invalid, Unavailable


def segment(value: str) -> str:
    """One URL path segment, percent-encoded (ids never add path levels)."""
    return quote(value, safe="")


def check_endpoint(endpoint: str) -> str:
    """The endpoint without trailing slash; raises Invalid unless it is an http(s) URL."""
    url = endpoint.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise Invalid(f"apiserver endpoint '{endpoint}' is not a URL like http://host:port")
    return url


@dataclass(frozen=True)
class SseMessage:
    """One server-sent event: `id`, `event` name and the joined `data` lines."""

    id: str | None
    event: str
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseMessage]:
    """Parse server-sent events from text lines (comments and `retry` ignored)."""
    data: list[str] = []
    event, event_id = "", None
    async for line in lines:
        if not line:
            if data:
                yield SseMessage(event_id, event or "message", "\n".join(data))
            data, event, event_id = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value


class Transport:
    """An httpx.AsyncClient bound to one apiserver; every failure becomes a FlameError."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float,
        token: str = "",
        verify: bool = True,
        ca_file: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = check_endpoint(endpoint)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            # a plain http:// apiserver needs no TLS context (redirects are not followed);
            # loading the system's CAs for one costs ~20 ms per client
            plain = self.endpoint.startswith("http://") and not ca_file
            tls = False if plain else http_verify(ca_file, insecure=not verify)
        except (OSError, ssl.SSLError) as exc:
            raise Invalid(f"cannot use CA file {ca_file}: {exc}") from exc
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            timeout=timeout,
            verify=tls,
            transport=transport,
            headers=headers,
        )

    @property
    def read_timeout(self) -> float:
        """Seconds an answer may take (the client's timeout)."""
        read = self._http.timeout.read
        return float(read) if read is not None else 30.0

    async def aclose(self) -> None:
        await self._http.aclose()

    def _unavailable(self, exc: httpx.TransportError) -> Unavailable:
        if isinstance(exc, httpx.TimeoutException):
            return Unavailable(f"the Flame apiserver at {self.endpoint} did not answer in time")
        reason = str(exc) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            reason += " (trust the server's CA with --ca-file or FLAME_CA_FILE)"
        return Unavailable(f"cannot reach the Flame apiserver at {self.endpoint}: {reason}")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; non-2xx answers raise their typed FlameError."""
        try:
            response = await self._http.request(
                method, path, params=params, json=json, files=files, data=data, headers=headers
            )
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and decode its JSON answer (None for an empty body)."""
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(
                f"the apiserver at {self.endpoint} answered {method} {path} with non-JSON data"
            ) from exc

    async def sse(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[SseMessage]:
        """Server-sent events of one stream until the server ends it."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            async with self._http.stream(
                "GET", path, params=params, timeout=timeout, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                async for message in iter_sse(response.aiter_lines()):
                    yield message
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
