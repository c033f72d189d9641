"""Verifying TLS client contexts from a CA file (httpx, asyncio streams, MQTT, AMQP)."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit


def client_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: trusts `ca_file` when given, else the system's CAs."""
    if ca_file and not Path(ca_file).is_file():
        raise FileNotFoundError(f"CA file {ca_file} does not exist")
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def http_verify(ca_file: str | Path | None, *, insecure: bool = False) -> ssl.SSLContext | bool:
    """httpx's `verify`: False only when asked (`insecure`), else a context trusting `ca_file`."""
    return False if insecure else client_context(ca_file)


TLS_SCHEMES = ("amqps", "mqtts")


def with_ca_file(url: str, ca_file: str | Path) -> str:
    """A broker URL with `?cafile=<ca_file>` added when it is amqps:// or mqtts:// and names no
    CA yet (what `flame up --tls` gives the services and the job's agents)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme not in TLS_SCHEMES or any(name == "cafile" for name, _ in query):
        return url
    query.append(("cafile", str(ca_file)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/", quote_via=quote)))
