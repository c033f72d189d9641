"""`create_privacy(sort, kwargs)`: validate the kwargs of a sort and build its transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flame_common.kwargs import build_provider
from flame_sdk.privacy.base import NoPrivacy, Privacy
from flame_sdk.privacy.dp import GaussianDP

_BUILDERS: dict[str, Callable[..., Privacy]] = {"default": NoPrivacy, "dp": GaussianDP}

SORTS = tuple(_BUILDERS)


def create_privacy(sort: str, kwargs: Mapping[str, Any] | None = None) -> Privacy:
    """Build privacy `sort` ("" means default); ValueError for an unknown sort or bad kwargs."""
    return build_provider("privacy", _BUILDERS, sort, kwargs)
