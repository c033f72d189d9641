"""MongoDB connection and Beanie initialisation (real MongoDB or the embedded nx-27017)."""

from __future__ import annotations

from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient

from flame_common.documents import ALL_DOCUMENTS
from flame_common.settings import FlameSettings


async def init_db(
    settings: FlameSettings, documents: list[type[Document]] | None = None
) -> AsyncMongoClient[Any]:
    """Connect to `settings.mongo_url` and initialise Beanie; returns the client (close it)."""
    if not settings.mongo_url:
        raise RuntimeError(
            "FLAME_MONGO_URL is not set: start the stack with `flame up` or point it at MongoDB"
        )
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    await init_beanie(
        database=client[settings.mongo_db], document_models=documents or ALL_DOCUMENTS
    )
    return client
