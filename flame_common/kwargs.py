"""Validate the `kwargs` of a pluggable provider (optimizer, selector, privacy...) into a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


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
