"""API tokens: created (shown once), listed and revoked; stored only as their sha256."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status

from flame_apiserver.auth import AnyCaller, new_token, token_hash
from flame_apiserver.context import Ctx
from flame_apiserver.ports import TokenRecord
from schemas.errors import Forbidden, NotFound
from schemas.token import NewToken, TokenInfo, TokenScope, TokenSpec

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=record.token_id,
        user_id=record.user_id,
        scope=TokenScope(record.scope),
        name=record.name,
        created_at=record.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewToken)
async def create_token(body: TokenSpec, caller: AnyCaller, ctx: Ctx) -> NewToken:
    """A new token (its secret appears only in this answer). Admins create any token; a user
    creates user tokens for itself."""
    own = caller.scope is TokenScope.USER and caller.user_id == body.user_id
    if not (caller.admin or (own and body.scope is TokenScope.USER)):
        raise Forbidden(f"an admin token is required to create a {body.scope.value} token")
    token = new_token()
    record = TokenRecord(
        token_id=uuid.uuid4().hex[:16],
        sha256=token_hash(token),
        user_id=body.user_id,
        scope=body.scope.value,
        name=body.name,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    await ctx.resources.add_token(record)
    return NewToken(**_info(record).model_dump(), token=token)


@router.get("", response_model=list[TokenInfo])
async def list_tokens(caller: AnyCaller, ctx: Ctx, userId: str = "") -> list[TokenInfo]:
    """Tokens of `userId` (admins: every token when empty; users: their own only)."""
    if not caller.admin:
        if userId not in ("", caller.user_id) or caller.scope is not TokenScope.USER:
            raise Forbidden(f"a token of user '{caller.user_id}' can list only its own tokens")
        userId = caller.user_id
    return [_info(t) for t in await ctx.resources.tokens(userId or None)]


@router.delete("/{token_id}", response_model=str)
async def revoke_token(token_id: str, caller: AnyCaller, ctx: Ctx) -> str:
    """Revoke a token (admins: any; users: their own); it is refused from now on."""
    if not caller.admin:
        mine = await ctx.resources.tokens(caller.user_id)
        if caller.scope is not TokenScope.USER or token_id not in {t.token_id for t in mine}:
            raise NotFound(f"token '{token_id}' not found")
    removed = await ctx.resources.delete_token(token_id)
    if removed is None:
        raise NotFound(f"token '{token_id}' not found")
    ctx.tokens.evict(removed.sha256)
    return f"token '{token_id}' revoked"
