"""Error mapping: `{code, message}` bodies, other bodies by status, outages name the endpoint."""

from __future__ import annotations

import httpx
import pytest

from flame_common.embedded import free_port
from flame_sdk.client import FlameClient
from flame_sdk.client.errors import error_from_response
from schemas.errors import (
    BadRequest,
    Conflict,
    ErrorCode,
    FlameError,
    Invalid,
    NotFound,
    Unavailable,
)
from tests.client.fakes import FakeApi, json_response


def test_error_body_decides_the_type() -> None:
    error = error_from_response(
        json_response(409, {"code": "conflict", "message": "job is running"})
    )
    assert type(error) is Conflict
    assert error.message == "job is running"
    # the body's code wins over the HTTP status
    assert (
        type(error_from_response(json_response(500, {"code": "invalid", "message": "m"})))
        is Invalid
    )


@pytest.mark.parametrize(
    ("status", "body", "expected", "message"),
    [
        (
            500,
            "failed to get job: no document found",
            FlameError,
            "failed to get job: no document found",
        ),
        (404, None, NotFound, "HTTP 404 Not Found"),
        (
            422,
            {"detail": [{"loc": ["body", "name"], "msg": "Field required"}]},
            Invalid,
            "name: Field required",
        ),
        (400, {"code": "rate_limited", "message": "slow down"}, BadRequest, "slow down"),
        (503, {"detail": "broker down"}, Unavailable, "broker down"),
        (418, "odd\nmulti-line", BadRequest, "odd multi-line"),
    ],
)
def test_other_bodies_map_by_status(
    status: int, body: object, expected: type[FlameError], message: str
) -> None:
    error = error_from_response(json_response(status, body))
    assert type(error) is expected
    assert error.message == message
    assert (
        error.code == expected.code
        if expected is not FlameError
        else error.code == ErrorCode.INTERNAL
    )


def test_plain_text_error_body() -> None:
    error = error_from_response(httpx.Response(502, text="bad gateway"))
    assert (error.code, error.message) == (ErrorCode.INTERNAL, "bad gateway")


async def test_client_raises_typed_errors(api: FakeApi, client: FlameClient) -> None:
    api.on(
        "GET",
        "/users/alice/designs/d1",
        404,
        {"code": "not_found", "message": "design d1 not found"},
    )
    with pytest.raises(NotFound, match="design d1 not found"):
        await client.designs.get("d1")


async def test_unreachable_server_is_unavailable_naming_the_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    async with FlameClient(endpoint, "alice", timeout=2.0) as client:
        with pytest.raises(Unavailable, match=f"cannot reach the Flame apiserver at {endpoint}"):
            await client.jobs.list()


async def test_timeouts_are_unavailable() -> None:
    def slow(_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    async with FlameClient("http://api:1", "alice", transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(Unavailable, match="at http://api:1 did not answer in time"):
            await client.designs.list()


def test_bad_endpoint_and_user_are_rejected() -> None:
    with pytest.raises(Invalid, match="'localhost:10100' is not a URL"):
        FlameClient("localhost:10100", "alice")
    with pytest.raises(Invalid, match="user name is empty"):
        FlameClient("http://api:1", " ")
