"""`create_selector(sort, kwargs)`: validate the kwargs of a sort and build its selector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flame_common.kwargs import build_provider
from flame_sdk.selectors.base import Selector
from flame_sdk.selectors.default import DefaultSelector, RandomSelector
from flame_sdk.selectors.fedbuff import FedBuffSelector
from flame_sdk.selectors.oort import OortSelector

_BUILDERS: dict[str, Callable[..., Selector]] = {
    "default": DefaultSelector,
    "random": RandomSelector,
    "fedbuff": FedBuffSelector,
    "oort": OortSelector,
}

SORTS = tuple(_BUILDERS)


def create_selector(sort: str, kwargs: Mapping[str, Any] | None = None) -> Selector:
    """Build selector `sort` ("" means default); ValueError for an unknown sort or bad kwargs."""
    return build_provider("selector", _BUILDERS, sort, kwargs)
