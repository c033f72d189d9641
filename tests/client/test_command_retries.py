"""FlameClient sends each job command under its own Idempotency-Key and retries an unavailable
one a bounded number of times under the same key."""

from __future__ import annotations

import httpx
import pytest

from flame_sdk.client import FlameClient, jobs
from flame_sdk.client.jobs import COMMAND_ATTEMPTS
from schemas.errors import Unavailable


async def test_an_unavailable_command_is_retried_under_one_key_then_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(jobs, "RETRY_DELAY", 0.01)  # the pauses between attempts, shortened

    def always_503(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("Idempotency-Key", ""))
        return httpx.Response(503, text="the controller did not answer")

    transport = httpx.MockTransport(always_503)
    async with FlameClient("http://flame", "alice", transport=transport) as client:
        with pytest.raises(Unavailable, match="did not answer"):
            await client.jobs.stop("j1")
        assert len(sent) == COMMAND_ATTEMPTS and len(set(sent)) == 1 and sent[0]
        with pytest.raises(Unavailable):
            await client.jobs.delete("j1")
    assert len(set(sent)) == 2  # the next command has a key of its own
