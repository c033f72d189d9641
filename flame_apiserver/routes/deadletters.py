"""Dead letters of the namespace: messages no consumer could handle, read without consuming."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from flame_apiserver.auth import Admin
from flame_apiserver.context import Ctx
from flame_common.deadletters import peek
from schemas.deadletters import DeadLetter

router = APIRouter(prefix="/deadletters", tags=["deadletters"])


@router.get("", response_model=list[DeadLetter])
async def list_dead_letters(
    _: Admin, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetter]:
    """The oldest dead letters (at most `limit`; admin token); reading leaves them queued."""
    return await peek(ctx.settings, limit)
