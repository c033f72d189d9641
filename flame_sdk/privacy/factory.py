"""`create_privacy(sort, kwargs)`: validate the kwargs of a sort and build its transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field

from flame_common.kwargs import ProviderKwargs, build_provider
from flame_sdk.privacy.base import NoPrivacy, Privacy
from flame_sdk.privacy.dp import GaussianDP

DEFAULT_SORT = "default"


class _NoKwargs(ProviderKwargs):
    pass


class _DPKwargs(ProviderKwargs):
    clip_threshold: float = Field(gt=0)
    noise_factor: float = Field(ge=0)
    seed: int | None = None


_SORTS: dict[str, tuple[type[ProviderKwargs], Callable[..., Privacy]]] = {
    "default": (_NoKwargs, NoPrivacy),
    "dp": (_DPKwargs, GaussianDP),
}

SORTS = tuple(_SORTS)


def create_privacy(sort: str, kwargs: Mapping[str, Any] | None = None) -> Privacy:
    """Build privacy `sort` ("" means default); ValueError for an unknown sort or bad kwargs."""
    return build_provider("privacy", _SORTS, sort or DEFAULT_SORT, kwargs)
