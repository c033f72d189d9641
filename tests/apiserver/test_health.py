"""`GET /healthz` and `GET /readyz` need no token; readiness follows MongoDB and RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from flame_apiserver.app import create_app
from flame_common.settings import FlameSettings
from tests.agents.helpers import CutOffProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxies(settings: FlameSettings) -> AsyncIterator[dict[str, CutOffProxy]]:
    """Cuttable TCP proxies to the test MongoDB and RabbitMQ."""
    found = {}
    for name, url in (("mongodb", settings.mongo_url), ("rabbitmq", settings.rabbit_url)):
        parts = urlsplit(url)
        found[name] = CutOffProxy(parts.hostname or "127.0.0.1", parts.port or 0)
        await found[name].start()
    yield found
    for proxy in found.values():
        await proxy.close()


@pytest.fixture
async def anonymous(
    settings: FlameSettings, proxies: dict[str, CutOffProxy]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the real services reached through the proxies; a client sending no token."""
    rabbit = urlsplit(settings.rabbit_url)
    settings = settings.with_overrides(
        mongo_url=f"mongodb://127.0.0.1:{proxies['mongodb'].port}/",
        rabbit_url=rabbit._replace(
            netloc=f"{rabbit.username}:{rabbit.password}@127.0.0.1:{proxies['rabbitmq'].port}"
        ).geturl(),
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as client,
    ):
        yield client


async def test_healthz_and_readyz_need_no_token(anonymous: httpx.AsyncClient):
    live = await anonymous.get("/healthz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"mongodb": "ok", "rabbitmq": "ok"}}


@pytest.mark.parametrize("cut", ["mongodb", "rabbitmq"])
async def test_readyz_names_the_unreachable_dependency(
    anonymous: httpx.AsyncClient, proxies: dict[str, CutOffProxy], cut: str
):
    proxies[cut].cut()
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready" and body["checks"][cut].startswith("unreachable: ")
    other = next(name for name in proxies if name != cut)
    assert body["checks"][other] == "ok"
    assert (await anonymous.get("/healthz")).status_code == 200  # alive all the same
