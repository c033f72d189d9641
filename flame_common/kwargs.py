"""Build a pluggable provider (optimizer, selector, privacy, data sampler) from sort and kwargs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from schemas.plugins import kwargs_model, parse_kwargs, sort_name

T = TypeVar("T")


def build_provider(
    kind: str,
    builders: Mapping[str, Callable[..., T]],
    sort: str,
    kwargs: Mapping[str, Any] | None,
) -> T:
    """Parse `kwargs` with the catalogue's model of `sort` (`schemas.plugins`; "" = the kind's
    default) and call the sort's builder with them.

    ValueError for an unknown sort (listing the known ones) or for bad kwargs.
    """
    name = sort_name(kind, sort)
    parsed = parse_kwargs(kind, name, kwargs_model(kind, name), kwargs)
    return builders[name](**parsed.model_dump())
