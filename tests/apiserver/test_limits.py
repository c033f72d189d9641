"""Bounds at the REST edge: numbers that become time, memory or processes are refused with a 422
naming the field, bodies above their cap with 413, event streams beyond the limit with 503."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from flame_apiserver.auth import token_hash
from flame_common.settings import FlameSettings
from tests.apiserver.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    MNIST_CODE,
    MemoryStack,
    api_client,
    example,
    served,
)
from tests.support.wait import eventually
from tests.support.zips import make_zip

U = "alice"


def _job(**changes: Any) -> dict[str, Any]:
    job = example("mnist", "job.json")
    return {
        **{k: v for k, v in job.items() if k not in ("dataSpecPath", "modelSpecPath")},
        "dataSpec": [{"role": "trainer", "datasetGroups": {"us": ["d1"]}}],
        "modelSpec": example("mnist", "modelSpec.json"),
        **changes,
    }


async def test_run_time_rounds_and_replicas_are_bounded(
    api: httpx.AsyncClient, stack: MemoryStack
) -> None:
    cases = {
        "maxRunTime": (_job(maxRunTime=1_000_000_000_000), "at most 604800 s (7 days)"),
        "rounds": (
            _job(modelSpec={**_job()["modelSpec"], "hyperparameters": {"rounds": 10**9}}),
            "rounds must be between 1 and 100000",
        ),
        "fractional rounds": (
            _job(modelSpec={**_job()["modelSpec"], "hyperparameters": {"rounds": 2.5}}),
            "rounds must be a whole number",
        ),
    }
    for name, (body, message) in cases.items():
        r = await api.post(f"/users/{U}/jobs", json=body)
        assert r.status_code == 422, name
        assert message in r.json()["message"], r.text
    assert stack.controller.commands == []  # refused before any RPC
    r = await api.post(f"/users/{U}/jobs", json=_job(maxRunTime=604_800))  # a week is allowed:
    assert (
        r.status_code == 404 and r.json()["message"] == "dataset 'd1' not found"
    )  # on to the data check

    assert (await api.post(f"/users/{U}/designs", json={"id": "d"})).status_code == 201
    schema = example("mnist", "schema.json")
    schema["roles"][0]["replica"] = 10**9
    r = await api.post(f"/users/{U}/designs/d/schema", json=schema)
    assert r.status_code == 422 and "replica" in r.json()["message"], r.text
    assert "less than or equal to 1000" in r.json()["message"]
    assert (await api.get(f"/users/{U}/designs/d/schema")).status_code == 404


async def test_json_bodies_are_capped_apart_from_code_uploads(
    memory_settings: FlameSettings, stack: MemoryStack
) -> None:
    small = memory_settings.with_overrides(max_json_bytes=4096)
    async with api_client(small, stack.ports()) as api:
        r = await api.post(f"/users/{U}/designs", json={"id": "d", "description": "x" * 5000})
        assert r.status_code == 413, r.text
        assert r.json() == {
            "code": "too_large",
            "message": "request body is larger than 4096 bytes",
        }
        assert (await api.get(f"/users/{U}/designs")).json() == []
        assert (await api.post(f"/users/{U}/designs", json={"id": "d"})).status_code == 201
        big_code = {**MNIST_CODE, "trainer/weights.bin": random.Random(0).randbytes(8000)}
        files = {"fileData": ("c.zip", make_zip(big_code))}
        assert len(make_zip(big_code)) > 4096
        assert (await api.post(f"/users/{U}/designs/d/code", files=files)).status_code == 201


async def _open_stream(exits: AsyncExitStack, client: httpx.AsyncClient, user: str) -> int:
    """Open the event stream of `user`'s running job; returns its status (kept open if 200)."""
    response = await exits.enter_async_context(
        client.stream("GET", f"/users/{user}/jobs/{user}-job/events/stream")
    )
    if response.status_code == 200:
        frames = response.aiter_text()
        exits.push_async_callback(frames.aclose)  # (dropping it unread would close the stream)
        await anext(frames)  # the first frame: the stream is being served
    else:
        await response.aread()
    return response.status_code


async def test_event_streams_are_limited_in_all_and_per_user(
    memory_settings: FlameSettings, stack: MemoryStack
) -> None:
    settings = memory_settings.with_overrides(
        admin_token_sha256=token_hash(ADMIN_TOKEN),
        max_event_streams=3,
        max_event_streams_per_user=2,
    )
    for user in ("alice", "bob", "carol"):
        stack.job(f"{user}-job", user, state="running")  # streams of running jobs stay open
    async with (
        served(settings, stack) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=10) as client,
    ):
        async with AsyncExitStack() as exits:
            assert [await _open_stream(exits, client, "alice") for _ in range(2)] == [200, 200]
            r = await client.get("/users/alice/jobs/alice-job/events/stream")
            assert r.status_code == 503 and "FLAME_MAX_EVENT_STREAMS_PER_USER" in r.text
            assert await _open_stream(exits, client, "bob") == 200
            r = await client.get("/users/carol/jobs/carol-job/events/stream")
            assert r.status_code == 503 and "3 event streams are open" in r.json()["message"]
            assert (await client.get("/users/carol/jobs/carol-job/events")).status_code == 200

        async def carol_gets_a_stream() -> bool:
            async with AsyncExitStack() as exits:
                return await _open_stream(exits, client, "carol") == 200

        # the streams closed by their clients free their slots
        await eventually(carol_gets_a_stream, what="a slot freed by the closed streams")


@pytest.fixture
async def small_controller(settings: FlameSettings) -> AsyncIterator[None]:
    from flame_controller.app import running_controller

    async with running_controller(settings.with_overrides(max_tasks_per_job=1)):
        yield


@pytest.mark.integration
async def test_tasks_per_job_are_bounded_by_the_controller(
    app_client: httpx.AsyncClient, small_controller: None
) -> None:
    body = {"computeId": "default", "region": "default/us", "apiKey": "k-default", "adminId": "ops"}
    assert (await app_client.post("/computes", json=body)).status_code == 201
    assert (await app_client.post(f"/users/{U}/designs", json={"id": "mnist"})).status_code == 201
    schema = example("mnist", "schema.json")
    assert (
        await app_client.post(f"/users/{U}/designs/mnist/schema", json=schema)
    ).status_code == 201
    files = {"fileData": ("mnist.zip", make_zip(MNIST_CODE))}
    assert (await app_client.post(f"/users/{U}/designs/mnist/code", files=files)).status_code == 201
    r = await app_client.post(f"/users/{U}/datasets", json=example("mnist", "dataset.json"))
    dataset = str(r.json())
    job = _job(dataSpec=[{"role": "trainer", "datasetGroups": {"us": [dataset]}}])
    r = await app_client.post(f"/users/{U}/jobs", json=job)
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "the job would have 2 tasks, more than the limit of 1"
    assert (await app_client.get(f"/users/{U}/jobs")).json() == []
