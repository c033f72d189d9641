"""Datasets: metadata about data that lives with a compute (realm, visibility)."""

from __future__ import annotations

from pydantic import Field

from schemas.base import WireModel


class DatasetInfo(WireModel):
    id: str = ""
    user_id: str = ""
    name: str = ""
    description: str = ""
    url: str = Field(min_length=1)
    data_format: str = Field(min_length=1)
    realm: str = Field(min_length=1)
    compute_id: str = ""
    is_public: bool = False


class DatasetUpdate(WireModel):
    """Partial update of a dataset: `id` and `userId` are never overwritten."""

    id: str | None = None
    user_id: str | None = None
    name: str | None = None
    description: str | None = None
    url: str | None = None
    data_format: str | None = None
    realm: str | None = None
    compute_id: str | None = None
    is_public: bool | None = None
