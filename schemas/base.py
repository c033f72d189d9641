"""Base models: camelCase JSON names on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

COMMENT_PREFIX = "//"


class CommentedModel(BaseModel):
    """An object users may write by hand: keys starting with `//` are comments, dropped before
    the fields are validated (so `extra="forbid"` still names every other unknown key)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_comments(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (isinstance(k, str) and k.startswith(COMMENT_PREFIX))
            }
        return data


class WireModel(CommentedModel):
    """A model read from users or agents: camelCase aliases, `//` comment keys dropped, other
    unknown fields rejected."""

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
