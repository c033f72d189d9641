"""Validate the `kwargs` of a pluggable provider (optimizer, selector, privacy...) into a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ProviderKwargs(BaseModel):
    """Base for a provider's kwargs: unknown names rejected, frozen once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_kwargs(kind: str, sort: str, model: type[M], kwargs: Mapping[str, Any] | None) -> M:
    """Build `model` from `kwargs`; ValueError naming the provider and each bad kwarg."""
    try:
        return model.model_validate(dict(kwargs or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<kwargs>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"{kind} {sort!r}: bad kwargs: {problems}") from None


def build_provider(
    kind: str,
    sorts: Mapping[str, tuple[type[BaseModel], Callable[..., T]]],
    sort: str,
    kwargs: Mapping[str, Any] | None,
) -> T:
    """Look `sort` up in `sorts` (sort -> (kwargs model, builder)) and build it from `kwargs`.

    ValueError for an unknown sort (listing the known ones) or for bad kwargs.
    """
    if sort not in sorts:
        raise ValueError(f"unknown {kind} sort {sort!r}; known: {', '.join(sorts)}")
    model, build = sorts[sort]
    return build(**parse_kwargs(kind, sort, model, kwargs).model_dump())
