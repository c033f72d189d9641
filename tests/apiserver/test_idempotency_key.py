"""Job commands under an `Idempotency-Key`: FlameClient retries a command whose answer was lost
(503) with the same key, and the real controller runs it once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from flame_common.settings import FlameSettings
from flame_sdk.client import FlameClient
from schemas.job import JobSpec
from tests.apiserver.conftest import ADMIN_TOKEN
from tests.apiserver.test_jobs_controller import U, _job, _mnist_design

pytestmark = pytest.mark.integration


@pytest.fixture
async def controller(settings: FlameSettings) -> AsyncIterator[None]:
    from flame_controller.app import running_controller

    async with running_controller(settings):
        yield


class LostAnswers(httpx.AsyncBaseTransport):
    """Passes every request to the apiserver, but answers the first `lost` job commands 503 as
    if the answer had been lost on the way back (the command itself went through)."""

    def __init__(self, app: httpx.AsyncClient, lost: int) -> None:
        self.app, self.lost = app, lost
        self.keys: list[tuple[str, str]] = []  # (method, Idempotency-Key) of each command

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.app.send(request)
        await response.aread()
        if request.method in ("POST", "PUT", "DELETE"):
            self.keys.append((request.method, request.headers.get("Idempotency-Key", "")))
            if self.lost:
                self.lost -= 1
                return httpx.Response(503, text="the answer was lost")
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


async def test_a_create_whose_answer_was_lost_is_retried_and_makes_one_job(
    app_client: httpx.AsyncClient, controller: None
) -> None:
    dataset_id = await _mnist_design(app_client)
    lossy = LostAnswers(app_client, lost=2)
    async with FlameClient("http://flame", U, token=ADMIN_TOKEN, transport=lossy) as client:
        status = await client.jobs.create(JobSpec.model_validate(_job(dataset_id)))
        assert status.state.value == "ready"
        jobs = await client.jobs.list()
        assert [j.id for j in jobs] == [status.id]
        keys = {k for _, k in lossy.keys}
        assert len(lossy.keys) == 3 and len(keys) == 1 and "" not in keys  # one key, 3 sends

        lossy.lost = 1
        started = await client.jobs.start(status.id)  # a retried start is not a Conflict
        assert started.state.value in ("deploying", "running")
        start_keys = [k for m, k in lossy.keys[3:] if m == "PUT"]
        assert len(start_keys) == 2 and len(set(start_keys)) == 1 and start_keys[0] not in keys


async def test_the_header_reaches_the_controller(
    app_client: httpx.AsyncClient, controller: None
) -> None:
    dataset_id = await _mnist_design(app_client)
    headers = {"Idempotency-Key": "same"}
    first = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id), headers=headers)
    again = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id), headers=headers)
    other = await app_client.post(f"/users/{U}/jobs", json=_job(dataset_id))
    assert first.status_code == again.status_code == other.status_code == 201, first.text
    assert again.json() == first.json() and other.json()["id"] != first.json()["id"]
    assert len((await app_client.get(f"/users/{U}/jobs")).json()) == 2
