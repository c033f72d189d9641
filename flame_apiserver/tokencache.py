"""Tokens the apiserver found recently, by hash, so most requests authenticate without a read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flame_apiserver.ports import TokenRecord

CACHE_SECONDS = 5.0  # a token revoked through another apiserver is refused after at most this
CACHE_SIZE = 10_000


@dataclass
class TokenCache:
    """Tokens found recently, by hash; a revocation through this app evicts its token at once."""

    seconds: float = CACHE_SECONDS
    _found: dict[str, tuple[float, TokenRecord]] = field(default_factory=dict)

    def get(self, digest: str) -> TokenRecord | None:
        hit = self._found.get(digest)
        if hit is None or hit[0] < time.monotonic():
            self._found.pop(digest, None)
            return None
        return hit[1]

    def put(self, record: TokenRecord) -> None:
        if len(self._found) >= CACHE_SIZE:
            self._found.clear()
        self._found[record.sha256] = (time.monotonic() + self.seconds, record)

    def evict(self, digest: str) -> None:
        self._found.pop(digest, None)
