"""Designs and their TAG schema: roles joined by channels, grouped by tags."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from schemas.base import WireModel

MAX_REPLICA = 1000  # instances of one role per group association


class GroupBy(WireModel):
    type: str = "tag"
    value: list[str] = Field(default_factory=list)


class Role(WireModel):
    name: str = Field(min_length=1)
    description: str = ""
    is_data_consumer: bool = False
    replica: int = Field(default=1, ge=0, le=MAX_REPLICA)
    group_association: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("group_association", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class Channel(WireModel):
    name: str = Field(min_length=1)
    pair: list[str] = Field(min_length=2, max_length=2)
    group_by: GroupBy = Field(default_factory=GroupBy)
    func_tags: dict[str, list[str]] = Field(default_factory=dict)
    backend: str = ""
    broker_host: str = ""
    description: str = ""
    is_unidirectional: bool = False
    is_bidirectional: bool | None = None  # the SDK's spelling (Flame's Python SDK reads it)

    @field_validator("func_tags", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class Connector(WireModel):
    name: str
    description: str = ""
    connection: dict[str, Any] = Field(default_factory=dict)


class DesignSchema(WireModel):
    """The topology abstraction graph (TAG) of a design; `revision` is server-assigned."""

    revision: int = 0
    name: str = ""
    description: str = ""
    roles: list[Role]
    channels: list[Channel]
    connectors: list[Connector] = Field(default_factory=list)

    def role_names(self) -> set[str]:
        return {r.name for r in self.roles}

    def semantic_errors(self) -> list[str]:
        """Problems a well-formed schema can still have (unknown roles in pairs, duplicates)."""
        errors: list[str] = []
        names = [r.name for r in self.roles]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            errors.append(f"role '{dup}' is defined more than once")
        cnames = [c.name for c in self.channels]
        for dup in sorted({n for n in cnames if cnames.count(n) > 1}):
            errors.append(f"channel '{dup}' is defined more than once")
        known = set(names)
        for ch in self.channels:
            for role in ch.pair:
                if role not in known:
                    errors.append(f"channel '{ch.name}' names unknown role '{role}'")
            for role in ch.func_tags:
                if role not in ch.pair:
                    errors.append(f"channel '{ch.name}' has funcTags for '{role}', not in its pair")
        channel_names = set(cnames)
        for r in self.roles:
            for assoc in r.group_association:
                for ch_name in assoc:
                    if ch_name not in channel_names:
                        errors.append(
                            f"role '{r.name}' groupAssociation names unknown channel '{ch_name}'"
                        )
        return errors


class DesignInfo(WireModel):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    name: str = ""
    description: str = ""
    user_id: str = ""


class DesignUpdate(WireModel):
    """Partial update of a design: ids are never overwritten."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    user_id: str | None = None


class Design(DesignInfo):
    schema_: DesignSchema | None = Field(default=None, alias="schema")


class CodeRevision(WireModel):
    """A stored code revision of a design (`revision` 0: the design has no code)."""

    revision: int = 0
    file_name: str = ""
    size: int = 0
    sha256: str = ""
