"""Who is calling: bearer tokens (stored hashed, cached per app) and what each caller may do."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flame_apiserver.context import ApiContext, Ctx
from schemas.errors import Forbidden, Unauthorized
from schemas.task import TASK_KEY_HEADER
from schemas.token import TokenScope, token_sha256

BOOTSTRAP = "bootstrap"  # token id of the tokens given by hash in the settings

_bearer = HTTPBearer(
    auto_error=False,
    description="an API token: `flamectl create token`, or the admin token `flame up` writes",
)


def new_token() -> str:
    return secrets.token_urlsafe(32)


token_hash = token_sha256


@dataclass(frozen=True)
class Caller:
    user_id: str
    scope: TokenScope
    token_id: str

    @property
    def admin(self) -> bool:
        return self.scope is TokenScope.ADMIN


def _configured(ctx: ApiContext, digest: str) -> Caller | None:
    """The bootstrap tokens the settings name by hash (compared in constant time)."""
    settings = ctx.settings
    for configured, scope in (
        (settings.admin_token_sha256, TokenScope.ADMIN),
        (settings.registration_token_sha256, TokenScope.COMPUTE_REGISTRATION),
    ):
        if configured and hmac.compare_digest(configured.lower().encode(), digest.encode()):
            return Caller("admin", scope, BOOTSTRAP)
    return None


async def authenticate(ctx: ApiContext, token: str) -> Caller:
    """The caller a token speaks for; Unauthorized when it is unknown or revoked."""
    digest = token_hash(token)
    found = _configured(ctx, digest)
    if found is not None:
        return found
    record = ctx.tokens.get(digest)
    if record is None:
        record = await ctx.resources.token_by_hash(digest)
        if record is None:
            raise Unauthorized("the bearer token is not valid (unknown or revoked)")
        ctx.tokens.put(record)
    return Caller(record.user_id, TokenScope(record.scope), record.token_id)


async def _caller(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("header 'Authorization: Bearer <token>' with an API token is required")
    return await authenticate(ctx, credentials.credentials)


AnyCaller = Annotated[Caller, Depends(_caller)]


async def _user_caller(user: str, caller: AnyCaller) -> Caller:
    """The path's `{user}` must be the token's user, unless the token is an admin's."""
    if caller.admin or (caller.scope is TokenScope.USER and caller.user_id == user):
        return caller
    if caller.scope is TokenScope.USER:
        raise Forbidden(f"a token of user '{caller.user_id}' cannot act for user '{user}'")
    raise Forbidden(f"a {caller.scope.value} token cannot act for a user")


async def _admin(caller: AnyCaller) -> Caller:
    if not caller.admin:
        raise Forbidden("an admin token is required")
    return caller


async def _registrar(caller: AnyCaller) -> Caller:
    if caller.scope not in (TokenScope.ADMIN, TokenScope.COMPUTE_REGISTRATION):
        raise Forbidden("computes are registered with an admin or compute-registration token")
    return caller


UserCaller = Annotated[Caller, Depends(_user_caller)]
Admin = Annotated[Caller, Depends(_admin)]
Registrar = Annotated[Caller, Depends(_registrar)]
for_path_user = Depends(_user_caller)  # router-level: every route under /users/{user}


TaskKey = Annotated[
    str | None, Header(alias=TASK_KEY_HEADER, description="the task's key (never in the URL)")
]


def require_task_key(sent: str | None) -> str:
    if not sent:
        raise Unauthorized(f"header '{TASK_KEY_HEADER}' with the task's key is required")
    return sent


def check_task_key(task_id: str, stored: str, sent: str) -> None:
    """The agent's key must be the task's: 401 when wrong (constant-time compare)."""
    if not stored or not hmac.compare_digest(stored.encode(), sent.encode()):
        raise Unauthorized(f"wrong key for task '{task_id}'")
