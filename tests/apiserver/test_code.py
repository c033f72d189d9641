"""Design code through the REST API: revisions, download, and every unsafe or oversized zip."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from flame_common.settings import FlameSettings
from tests.apiserver.conftest import MNIST_CODE, MemoryStack, api_client
from tests.support.zips import make_zip, symlink

U = "alice"
CODE_URL = f"/users/{U}/designs/mnist/code"


def _files(data: bytes, name: str = "mnist.zip") -> dict[str, tuple[str, bytes, str]]:
    return {"fileData": (name, data, "application/zip")}


async def _design(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"/users/{U}/designs", json={"id": "mnist"})).status_code == 201


async def _nothing_stored(stack: MemoryStack) -> None:
    assert [await stack.resources.code(U, "mnist", r) for r in (1, 2)] == [None, None]
    design = await stack.resources.design(U, "mnist")
    assert design is not None and design.code_revision == 0


async def test_code_revisions(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    await _design(api)
    assert (await api.get(f"{CODE_URL}/revision")).json()["revision"] == 0
    assert (await api.get(CODE_URL)).status_code == 404

    first = make_zip(MNIST_CODE)
    r = await api.post(CODE_URL, files=_files(first), data={"fileName": "mnist.zip"})
    assert r.status_code == 201, r.text
    assert r.json()["revision"] == 1 and r.json()["fileName"] == "mnist.zip"
    second = make_zip({**MNIST_CODE, "trainer/main.py": b"print('v2')\n"})
    r = await api.put(f"{CODE_URL}/", files=_files(second))
    assert r.status_code == 200 and r.json()["revision"] == 2

    latest = await api.get(CODE_URL)
    assert latest.status_code == 200 and latest.content == second
    assert (await api.get(f"{CODE_URL}?revision=1")).content == first
    assert (await api.get(f"{CODE_URL}?revision=9")).status_code == 404
    assert (await api.get(f"{CODE_URL}/revision/")).json()["revision"] == 2
    uploaded = await stack.events.wait_for("code.uploaded", 2)
    assert uploaded[0].payload.detail["roles"] == ["aggregator", "trainer"]

    r = await api.delete(CODE_URL)
    assert r.status_code == 200
    assert (await api.get(CODE_URL)).status_code == 404
    await _nothing_stored(stack)


async def test_code_needs_design_and_file(api: httpx.AsyncClient, stack: MemoryStack) -> None:
    r = await api.post(CODE_URL, files=_files(make_zip(MNIST_CODE)))
    assert r.status_code == 404
    await _design(api)
    r = await api.post(CODE_URL, data={"fileName": "x.zip"})
    assert r.status_code == 422 and "fileData" in r.json()["message"]
    await _nothing_stored(stack)


BAD_ZIPS = {
    "dotdot": (make_zip({"trainer/main.py": b"x", "trainer/../../evil.py": b"x"}), 422, ".."),
    "absolute": (make_zip({"trainer/main.py": b"x", "/etc/evil.py": b"x"}), 422, "absolute"),
    "root file": (make_zip({"trainer/main.py": b"x", "setup.py": b"x"}), 422, "root"),
    "symlink": (
        make_zip([("trainer/main.py", b"x"), symlink("trainer/passwd", "/etc/passwd")]),
        422,
        "symbolic link",
    ),
    "not a zip": (b"this is not a zip file at all", 422, "not a valid zip"),
    "empty": (make_zip({}), 422, "no files"),
    "too many entries": (make_zip({f"trainer/f{i}.py": b"" for i in range(30)}), 413, "entries"),
    "zip bomb": (make_zip({"trainer/big.bin": b"\0" * 300_000}), 413, "unpacks"),
}


@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
async def test_bad_zip_rejected(
    memory_settings: FlameSettings, stack: MemoryStack, case: str
) -> None:
    data, status, needle = BAD_ZIPS[case]
    small = memory_settings.with_overrides(max_code_files=20, max_code_unpacked_bytes=200_000)
    async with api_client(small, stack.ports()) as client:
        await _design(client)
        r = await client.post(CODE_URL, files=_files(data), data={"fileName": "bad.zip"})
        assert r.status_code == status, r.text
        assert needle in r.json()["message"]
        await _nothing_stored(stack)


async def test_oversized_upload(memory_settings: FlameSettings, stack: MemoryStack) -> None:
    small = memory_settings.with_overrides(max_code_bytes=4096)
    noise = random.Random(0).randbytes(8000)  # incompressible
    big = make_zip({"trainer/noise.bin": noise})
    assert len(big) > 4096
    async with api_client(small, stack.ports()) as client:
        await _design(client)
        r = await client.post(CODE_URL, files=_files(big))
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        # far above the limit: refused from the Content-Length alone
        r = await client.post(CODE_URL, files=_files(big * 40))
        assert r.status_code == 413
        # a chunked body without Content-Length is cut off while streaming
        encoded = httpx.Request("POST", "http://x", files=_files(big * 40))
        body = encoded.read()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        form = {"content-type": encoded.headers["content-type"]}
        r = await client.post(CODE_URL, content=chunks(), headers=form)
        assert r.status_code == 413
        await _nothing_stored(stack)
