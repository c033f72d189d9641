"""The apiserver's GET /metrics: public, Prometheus text, RPC latency per command kind."""

from __future__ import annotations

import httpx

from flame_apiserver.rpc import ControllerClient
from flame_common import metrics
from flame_common.settings import FlameSettings
from schemas.commands import CommandReply, StartJob
from schemas.errors import NotFound


async def test_metrics_needs_no_token_and_is_not_in_the_openapi(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE flame_rpc_seconds histogram" in response.text
    assert "/metrics" not in (await api.get("/openapi.json")).json()["paths"]


class _Broker:
    """Stands in for FastStream's broker: answers every command with `reply`."""

    def __init__(self, client: list[ControllerClient], reply: CommandReply) -> None:
        self.client, self.reply = client, reply

    def subscriber(self, *_: object, **__: object):  # type: ignore[no-untyped-def]
        return lambda handler: handler

    async def publish(self, *_: object, correlation_id: str, **__: object) -> None:
        self.client[0]._pending[correlation_id].set_result(self.reply.model_dump(mode="json"))


async def test_rpc_latency_is_observed_with_kind_and_outcome() -> None:
    settings = FlameSettings(rpc_timeout=2)
    for reply, outcome in (
        (CommandReply.success({}), "ok"),
        (CommandReply.failure(NotFound("no such job")), "error"),
    ):
        holder: list[ControllerClient] = []
        client = ControllerClient(_Broker(holder, reply), settings)  # type: ignore[arg-type]
        holder.append(client)
        before = metrics.RPC_SECONDS.collect()[0]
        count = _samples(before, "job.start", outcome)
        try:
            await client.call(StartJob(user_id="u", job_id="j"))
        except NotFound:
            assert outcome == "error"
        assert _samples(metrics.RPC_SECONDS.collect()[0], "job.start", outcome) == count + 1


def _samples(family, kind: str, outcome: str) -> float:  # type: ignore[no-untyped-def]
    return next(
        (
            s.value
            for s in family.samples
            if s.name == "flame_rpc_seconds_count"
            and s.labels == {"kind": kind, "outcome": outcome}
        ),
        0.0,
    )
