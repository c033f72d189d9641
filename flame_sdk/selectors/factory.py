"""`create_selector(sort, kwargs)`: validate the kwargs of a sort and build its selector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field

from flame_common.kwargs import ProviderKwargs, build_provider
from flame_sdk.selectors.base import Selector
from flame_sdk.selectors.default import DefaultSelector, RandomSelector
from flame_sdk.selectors.fedbuff import FedBuffSelector
from flame_sdk.selectors.oort import OortSelector

DEFAULT_SORT = "default"


class _NoKwargs(ProviderKwargs):
    pass


class _Seeded(ProviderKwargs):
    seed: int | None = None


class _RandomKwargs(_Seeded):
    k: int = Field(ge=1)


class _FedBuffKwargs(_Seeded):
    c: int = Field(ge=1)


class _OortKwargs(_Seeded):
    aggr_num: int = Field(ge=1)


_SORTS: dict[str, tuple[type[ProviderKwargs], Callable[..., Selector]]] = {
    "default": (_NoKwargs, DefaultSelector),
    "random": (_RandomKwargs, RandomSelector),
    "fedbuff": (_FedBuffKwargs, FedBuffSelector),
    "oort": (_OortKwargs, OortSelector),
}

SORTS = tuple(_SORTS)


def create_selector(sort: str, kwargs: Mapping[str, Any] | None = None) -> Selector:
    """Build selector `sort` ("" means default); ValueError for an unknown sort or bad kwargs."""
    return build_provider("selector", _SORTS, sort or DEFAULT_SORT, kwargs)
