"""MongoDB connection and Beanie initialisation (real MongoDB or the embedded nx-27017)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient

from flame_common.documents import ALL_DOCUMENTS
from flame_common.settings import FlameSettings


def tls_options(settings: FlameSettings) -> dict[str, Any]:
    """TLS is asked for in the URL (`tls=true`, or `mongodb+srv://`); a URL that names no CA
    (`tlsCAFile`) trusts `settings.ca_file` when set."""
    url = settings.mongo_url
    query = {k.lower(): v.lower() for k, v in parse_qsl(urlsplit(url).query)}
    wants = url.startswith("mongodb+srv://") or "true" in (query.get("tls"), query.get("ssl"))
    if wants and settings.ca_file and "tlscafile" not in query:
        return {"tlsCAFile": settings.ca_file}
    return {}


async def init_db(
    settings: FlameSettings, documents: list[type[Document]] | None = None
) -> AsyncMongoClient[Any]:
    """Connect to `settings.mongo_url` and initialise Beanie; returns the client (close it)."""
    if not settings.mongo_url:
        raise RuntimeError(
            "FLAME_MONGO_URL is not set: start the stack with `flame up` or point it at MongoDB"
        )
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True, **tls_options(settings)
    )
    await init_beanie(
        database=client[settings.mongo_db], document_models=documents or ALL_DOCUMENTS
    )
    return client
