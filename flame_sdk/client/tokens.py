"""API tokens: create (the secret is shown once), list and revoke."""

from __future__ import annotations

import builtins

from flame_sdk.client.base import Resource
from flame_sdk.client.http import segment
from schemas.token import NewToken, TokenInfo, TokenScope, TokenSpec


class TokensClient(Resource):
    async def create(
        self, user_id: str, *, scope: TokenScope = TokenScope.USER, name: str = ""
    ) -> NewToken:
        """A new token of `user_id` (admin/compute-registration scopes need an admin token)."""
        spec = TokenSpec(user_id=user_id, scope=scope, name=name)
        return NewToken.model_validate(await self._t.json("POST", "/tokens", json=spec.wire()))

    async def list(self, *, user_id: str = "") -> builtins.list[TokenInfo]:
        """Tokens of `user_id`; with an admin token and no user, every token."""
        params = {"userId": user_id} if user_id else {}
        body = await self._t.json("GET", "/tokens", params=params)
        return [TokenInfo.model_validate(t) for t in body or []]

    async def revoke(self, token_id: str) -> None:
        await self._t.json("DELETE", f"/tokens/{segment(token_id)}")
