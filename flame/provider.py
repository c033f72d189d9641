"""`Provider`: Flame's `<kind>_provider.get(sort, **kwargs)` over one of our SDK's factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Provider(Generic[T]):
    """Builds the plugin of a sort (a string or one of Flame's sort enums) with its kwargs;
    ValueError for an unknown sort or bad kwargs, as our SDK's factory raises it."""

    def __init__(self, create: Callable[[str, Mapping[str, Any]], T]) -> None:
        self._create = create

    def get(self, sort: Any, **kwargs: Any) -> T:
        return self._create(str(getattr(sort, "value", sort)), kwargs)
