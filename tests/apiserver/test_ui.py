"""The dashboard routes on the in-memory app: the page, its static files, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

import flame_apiserver
from flame_apiserver.routes import ui
from flame_sdk.cli.bootstrap import dashboard_link, write_cli_config

UI = Path(flame_apiserver.__file__).parent / "ui"
VENDORED = {"chart.umd.min.js": "chart.js.LICENSE.md", "cytoscape.min.js": "cytoscape.LICENSE"}


async def test_the_page_needs_no_token_and_links_its_files(api: httpx.AsyncClient) -> None:
    response = await api.get("/ui", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    scripts = re.findall(r'src="/ui/static/([^"]+)"', response.text)
    assert scripts == ["chart.umd.min.js", "cytoscape.min.js", "app.js"]
    for name in [*scripts, "app.css"]:
        linked = await api.get(f"/ui/static/{name}", headers={"Authorization": ""})
        assert linked.status_code == 200, name
    assert (await api.get("/ui/")).status_code == 200  # the slash-tolerant spelling too


@pytest.mark.parametrize(
    ("name", "content_type", "cache"),
    [
        ("app.js", "text/javascript; charset=utf-8", "no-cache"),
        ("app.css", "text/css; charset=utf-8", "no-cache"),
        ("index.html", "text/html; charset=utf-8", "no-cache"),
        ("chart.umd.min.js", "text/javascript; charset=utf-8", "public, max-age=86400"),
        ("cytoscape.min.js", "text/javascript; charset=utf-8", "public, max-age=86400"),
        ("cytoscape.LICENSE", "text/plain; charset=utf-8", "no-cache"),
        ("chart.js.LICENSE.md", "text/markdown; charset=utf-8", "no-cache"),
        ("README.md", "text/markdown; charset=utf-8", "no-cache"),
    ],
)
async def test_static_files_have_their_content_type_and_cache_policy(
    api: httpx.AsyncClient, name: str, content_type: str, cache: str
) -> None:
    response = await api.get(f"/ui/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == cache
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (UI / name).read_bytes()


async def test_an_unchanged_file_answers_304(api: httpx.AsyncClient) -> None:
    first = await api.get("/ui/static/app.js")
    again = await api.get("/ui/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/../app.py",
        "/ui/static/..%2Fapp.py",
        "/ui/static/%2E%2E/%2E%2E/pyproject.toml",
        "/ui/static/%2Fetc%2Fpasswd",
        "/ui/static//etc/passwd",
        "/ui/static/__init__.py",
        "/ui/static/nope.js",
        "/ui/static/",
        "/ui/static/sub/app.js",
        "/ui/index.html",
    ],
)
async def test_nothing_outside_the_package_folder_is_served(
    api: httpx.AsyncClient, path: str
) -> None:
    # httpx would resolve dot segments itself: send the raw path as written
    request = api.build_request("GET", "http://flame/")
    request.url = request.url.copy_with(raw_path=path.encode())
    response = await api.send(request)
    assert response.status_code == 404, (path, response.text[:200])
    assert "root:" not in response.text
    assert "[project]" not in response.text


def test_vendored_libraries_and_their_licenses_ship_with_the_package() -> None:
    for library, license_file in VENDORED.items():
        assert (UI / library).stat().st_size > 100_000, library
        assert "Permission is hereby granted" in (UI / license_file).read_text()  # MIT
    readme = (UI / "README.md").read_text()
    assert "chart.js" in readme
    assert "cytoscape" in readme
    assert set(ui.assets()) >= {"index.html", "app.js", "app.css", *VENDORED, *VENDORED.values()}


def test_the_package_data_globs_cover_every_dashboard_file() -> None:
    pyproject = (UI.parent.parent / "pyproject.toml").read_text()
    line = next(x for x in pyproject.splitlines() if x.startswith('"flame_apiserver.ui"'))
    globs = re.findall(r'"\*(\.[^"]+)"', line)
    for file in UI.iterdir():
        if file.suffix != ".py" and file.is_file():
            assert any(file.name.endswith(g) for g in globs), file.name


def test_flame_up_prints_a_dashboard_link_with_the_token_in_the_fragment(tmp_path: Path) -> None:
    config = write_cli_config(tmp_path / "config.yaml", "http://127.0.0.1:10100", "t/k+n=")
    link = urlsplit(dashboard_link(config))
    assert (link.netloc, link.path, link.query) == ("127.0.0.1:10100", "/ui", "")
    fragment = parse_qs(link.fragment)
    assert fragment["token"] == ["t/k+n="]  # what app.js reads back with URLSearchParams
    assert fragment["user"] == [yaml.safe_load(config.read_text())["user"]]
