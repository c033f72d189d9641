"""What flamectl suggests after an error: start the stack, set a token, whose token it is."""

from __future__ import annotations

import asyncio
import re

from flame_sdk.cli.config import CliConfig
from flame_sdk.client import FlameClient
from schemas.errors import ErrorCode, FlameError

OWNER_LOOKUP_SECONDS = 3.0
_TOKEN_OF = re.compile(r"token of user '([^']+)'")


def _where_token(config: CliConfig | None) -> str:
    place = f"`token:` in {config.source}" if config and config.source else "the config file"
    return f"--token, $FLAME_TOKEN or {place}"


def hint_for(error: FlameError, config: CliConfig | None, owner: str | None = None) -> str | None:
    """The default hint of `error` (None when there is nothing useful to add)."""
    if error.code is ErrorCode.UNAVAILABLE:
        if "CERTIFICATE_VERIFY_FAILED" in error.message:
            return None  # the message already says how to trust the CA
        if "non-JSON" in error.message:
            return "is that URL a Flame apiserver? check --endpoint or $FLAME_APISERVER"
        return (
            "`flame status` shows whether the local stack runs, `flame up` starts it; "
            "elsewhere, set --endpoint or $FLAME_APISERVER"
        )
    if error.code is ErrorCode.UNAUTHORIZED:
        where = _where_token(config)
        if config is not None and not config.token:
            return f"no API token is set: give one with {where} (`flame up` writes one)"
        return f"the token was refused (unknown or revoked): give another with {where}"
    if error.code is ErrorCode.FORBIDDEN:
        if owner is None:
            return None
        acting = config.user if config is not None else ""
        line = f"the token belongs to user '{owner}'"
        if acting and acting != owner:
            line += f"; flamectl acts as user '{acting}' (--user, $FLAME_USER)"
        return line
    return None


def owner_in(message: str) -> str | None:
    """The token's user when the apiserver's message names it."""
    found = _TOKEN_OF.search(message)
    return found.group(1) if found else None


async def token_owner(client: FlameClient, error: FlameError) -> str | None:
    """Whose token the client sends: named in the 403 message, else its own token list (a user
    token lists only its user's tokens); None when that does not tell (admins see every user)."""
    if named := owner_in(error.message):
        return named
    try:
        async with asyncio.timeout(OWNER_LOOKUP_SECONDS):
            tokens = await client.tokens.list()
    except FlameError as exc:
        return owner_in(exc.message)
    except TimeoutError:
        return None
    users = {t.user_id for t in tokens}
    return users.pop() if len(users) == 1 else None
