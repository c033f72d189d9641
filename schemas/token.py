"""API tokens: who a bearer token speaks for (one user, any user, or compute registration only)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from schemas.base import WireModel


def token_sha256(token: str) -> str:
    """The stored form of a token, also how settings name one (FLAME_ADMIN_TOKEN_SHA256): sha256
    hex (tokens are random and long, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenScope(StrEnum):
    USER = "user"  # acts for its user only
    ADMIN = "admin"  # acts for any user, registers computes, manages tokens
    COMPUTE_REGISTRATION = "compute-registration"  # may only register computes (deployers)


class TokenSpec(WireModel):
    """What `POST /tokens` creates: a token of `scope` owned by `userId`."""

    user_id: str = Field(min_length=1)
    scope: TokenScope = TokenScope.USER
    name: str = ""


class TokenInfo(WireModel):
    """A stored token as listed (its secret is never shown again after creation)."""

    id: str
    user_id: str
    scope: TokenScope = TokenScope.USER
    name: str = ""
    created_at: datetime | None = None


class NewToken(TokenInfo):
    """The answer to `POST /tokens`: the only time the secret `token` is shown."""

    token: str
