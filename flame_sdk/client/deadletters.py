"""Dead letters: messages the control plane's consumers gave up on (for operators)."""

from __future__ import annotations

import builtins

from flame_sdk.client.base import Resource
from schemas.deadletters import DeadLetter


class DeadLettersClient(Resource):
    async def list(self, *, limit: int = 100) -> builtins.list[DeadLetter]:
        """The oldest dead letters of the stack's namespace; they stay where they are."""
        body = await self._t.json("GET", "/deadletters", params={"limit": limit})
        return [DeadLetter.model_validate(d) for d in body or []]
