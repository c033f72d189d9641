"""Download a task's manifest: the `config` and `code.zip` parts of a multipart body."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from python_multipart.multipart import MultipartParser, parse_options_header

from flame_common.logs import get_logger
from flamelet.http import http_request
from schemas.task import TASK_KEY_HEADER

log = get_logger(__name__)


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


async def fetch_manifest(
    apiserver: str, job_id: str, task_id: str, key: str, *, timeout: float = 30.0, ca_file: str = ""
) -> Manifest:
    """GET /jobs/{job}/{task}/task with the key in header X-Flame-Task-Key, and parse it."""
    url = f"{apiserver.rstrip('/')}/jobs/{quote(job_id, safe='')}/{quote(task_id, safe='')}/task"
    if not key or any(c in key for c in "\r\n"):
        raise ManifestError("the task key is empty or not a single line", retryable=False)
    try:
        status, content_type, body = await http_request(
            "GET",
            url,
            accept="multipart/form-data",
            timeout=timeout,
            send={TASK_KEY_HEADER: key},
            ca_file=ca_file,
        )
    except ssl.SSLCertVerificationError as exc:
        raise ManifestError(
            f"the apiserver at {apiserver} has a certificate this agent does not trust "
            f"({exc.verify_message}); FLAME_CA_FILE names the CA to trust",
            retryable=False,
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ManifestError(
            f"cannot reach the apiserver at {apiserver}: {exc or type(exc).__name__}",
            retryable=True,
        ) from None
    if status != 200:
        text = body[:200].decode("utf-8", errors="replace")
        raise ManifestError(
            f"apiserver answered {status} for the manifest: {text}", retryable=status >= 500
        )
    return parse_manifest(body, content_type)


RETRY_FIRST = 0.5  # seconds before the first retry; doubles up to RETRY_MAX
RETRY_MAX = 5.0


async def fetch_patiently(
    apiserver: str, job_id: str, task_id: str, key: str, *, patience: float, ca_file: str = ""
) -> Manifest:
    """`fetch_manifest`, retrying an unreachable or failing (5xx) apiserver for `patience` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = RETRY_FIRST
    while True:
        left = deadline - loop.time()
        try:
            return await fetch_manifest(
                apiserver,
                job_id,
                task_id,
                key,
                timeout=min(30.0, max(left, 1.0)),
                ca_file=ca_file,
            )
        except ManifestError as exc:
            left = deadline - loop.time()
            if not exc.retryable:
                raise
            if left <= 0:
                raise ManifestError(f"no manifest after {patience:g} s: {exc}") from None
            log.warning("manifest fetch failed, retrying", error=str(exc), seconds_left=left)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, RETRY_MAX)
