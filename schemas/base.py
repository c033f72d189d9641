"""Base models: camelCase JSON names on the wire, snake_case in Python."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A model read from users or agents: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )

    def wire(self, **kwargs: object) -> dict[str, object]:
        """Dump with Flame's JSON field names."""
        return self.model_dump(mode="json", by_alias=True, **kwargs)  # type: ignore[arg-type]


class LenientModel(WireModel):
    """A wire model that ignores unknown fields (files written by hand, forward compatibility)."""

    model_config = ConfigDict(extra="ignore")
