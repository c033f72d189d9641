"""Download a task's manifest: the `config` and `code.zip` parts of a multipart body."""

from __future__ import annotations

import functools
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header


class ManifestError(RuntimeError):
    """The manifest could not be fetched or is malformed; the message says why."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Manifest:
    config: dict[str, Any]
    code_zip: bytes

    @property
    def role(self) -> str:
        return str(self.config["role"])


@dataclass
class _Parts:
    """Collects multipart parts by form name (python-multipart callbacks)."""

    parts: dict[str, bytearray] = field(default_factory=dict)
    _header: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _current: bytearray | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._header.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
        }

    def _begin(self) -> None:
        self._headers = {}
        self._current = None

    def _header_end(self) -> None:
        self._headers[bytes(self._header).lower()] = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode()
        self._current = self.parts.setdefault(name, bytearray())

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.extend(data[start:end])


def parse_manifest(body: bytes, content_type: str) -> Manifest:
    """Split a multipart/form-data body into the task config (JSON object) and the code zip."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ManifestError(f"manifest is not multipart/form-data (got '{content_type}')")
    collector = _Parts()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    parser.write(body)
    parser.finalize()
    missing = [p for p in ("config", "code.zip") if p not in collector.parts]
    if missing:
        raise ManifestError(f"manifest lacks part(s) {', '.join(missing)}")
    try:
        config = json.loads(collector.parts["config"])
    except ValueError as exc:
        raise ManifestError(f"task config is not JSON: {exc}") from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("role"), str)
        or not config["role"]
    ):
        raise ManifestError("task config is not an object with a non-empty 'role'")
    return Manifest(config=config, code_zip=bytes(collector.parts["code.zip"]))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context of the manifest client (built once: it costs ~30 ms)."""
    return httpx.create_ssl_context()


async def fetch_manifest(
    apiserver: str, job_id: str, task_id: str, key: str, *, timeout: float = 30.0
) -> Manifest:
    """GET /jobs/{job}/{task}/task?key=... and parse it."""
    url = f"{apiserver.rstrip('/')}/jobs/{job_id}/{task_id}/task"
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
            response = await client.get(
                url, params={"key": key}, headers={"Accept": "multipart/form-data"}
            )
    except httpx.HTTPError as exc:
        raise ManifestError(
            f"cannot reach the apiserver at {apiserver}: {exc}", retryable=True
        ) from None
    if response.status_code != 200:
        raise ManifestError(
            f"apiserver answered {response.status_code} for the manifest: {response.text[:200]}",
            retryable=response.status_code >= 500,
        )
    return parse_manifest(response.content, response.headers.get("content-type", ""))
