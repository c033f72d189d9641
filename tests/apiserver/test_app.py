"""App-wide contracts: OpenAPI, slash tolerance without redirects, JSON errors, console entry."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from flame_apiserver.auth import token_hash
from flame_apiserver.middleware import normalize_path
from flame_common.embedded import free_port, port_open
from flame_common.settings import FlameSettings
from tests.apiserver.conftest import ADMIN, ADMIN_TOKEN, MemoryStack, api_client
from tests.support.wait import wait_until


def test_normalize_path() -> None:
    assert normalize_path("/users/u/designs/") == "/users/u/designs"
    assert normalize_path("//users///u/designs//") == "/users/u/designs"
    assert normalize_path("/") == "/"
    assert normalize_path("//") == "/"


async def test_openapi_lists_flame_paths(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/users/{user}/designs",
        "/users/{user}/designs/{design_id}/schema",
        "/users/{user}/designs/{design_id}/code",
        "/users/{user}/designs/{design_id}/code/revision",
        "/datasets",
        "/users/{user}/jobs/{job_id}/status",
        "/users/{user}/jobs/{job_id}/tasks/{task_id}",
        "/users/{user}/jobs/{job_id}/events/stream",
        "/jobs/{job_id}/{task_id}/task",
        "/jobs/{job_id}/{task_id}/task/status",
        "/computes",
        "/computes/{compute_id}/deployments/{job_id}/config",
    ):
        assert path in paths, path
    assert "fileData" in json.dumps(spec["components"])


async def test_slashes_are_tolerated_without_redirect(api: httpx.AsyncClient) -> None:
    for url in (
        "/users/u/designs",
        "/users/u/designs/",
        "http://flame//users/u//designs/?limit=100",
    ):
        r = await api.get(url)
        assert r.status_code == 200 and r.json() == [], url
    r = await api.post("/users/u/designs/", json={"id": "d1"})
    assert r.status_code == 201
    assert (await api.get("/users/u/designs/d1/")).json()["id"] == "d1"


async def test_errors_are_json(api: httpx.AsyncClient) -> None:
    r = await api.get("/no/such/route")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await api.patch("/users/u/designs")
    assert r.status_code == 405 and set(r.json()) == {"code", "message"}
    r = await api.post(
        "/users/u/designs", content=b"not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json() == {
        "code": "bad_request",
        "message": "request body is not valid JSON",
    }
    r = await api.post("/users/u/designs", json=["a", "list"])
    assert r.status_code == 422


async def test_json_body_limit(memory_settings: FlameSettings, stack: MemoryStack) -> None:
    small = memory_settings.with_overrides(max_json_bytes=1000)
    async with api_client(small, stack.ports()) as client:
        huge = {"id": "d", "description": "x" * 200_000}
        r = await client.post("/users/u/designs", json=huge)
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        assert (await client.get("/users/u/designs")).json() == []


@pytest.mark.integration
def test_console_entry_serves_and_logs_json(
    settings: FlameSettings, tmp_path: os.PathLike[str]
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FLAME_MONGO_URL": settings.mongo_url,
        "FLAME_MONGO_DB": settings.mongo_db,
        "FLAME_RABBIT_URL": settings.rabbit_url,
        "FLAME_NAMESPACE": settings.namespace,
        "FLAME_API_PORT": str(port),
        "FLAME_LOG_JSON": "true",
        "FLAME_ADMIN_TOKEN_SHA256": token_hash(ADMIN_TOKEN),
    }
    exe = shutil.which("flame-apiserver")
    command = [exe] if exe else [sys.executable, "-m", "flame_apiserver.main"]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: port_open("127.0.0.1", port) or proc.poll() is not None,
            timeout=30,
            what=f"the apiserver listening on port {port}",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        r = httpx.get(f"http://127.0.0.1:{port}/users/u/designs/", headers=ADMIN, timeout=10)
        assert r.status_code == 200 and r.json() == []
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [r.get("event") for r in records if r.get("service") == "apiserver"]
    assert "apiserver ready" in events and "apiserver stopped" in events  # graceful shutdown
