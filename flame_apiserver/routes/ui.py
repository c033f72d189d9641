"""The web dashboard: the page at `GET /ui` and its files at `GET /ui/static/{name}` (no token)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Header, Response

from schemas.errors import NotFound

router = APIRouter(
    tags=["ui"], include_in_schema=False
)  # the page is public; its API calls are not

PACKAGE = "flame_apiserver.ui"
INDEX = "index.html"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_PLAIN = "text/plain; charset=utf-8"  # LICENSE files and anything without a known suffix
_VENDORED = ("chart.umd.min.js", "cytoscape.min.js")  # versioned in ui/README.md: cache a day
_OWN_CACHE = "no-cache"  # app.js/app.css/index.html: revalidate (ETag) so upgrades show at once
_VENDOR_CACHE = "public, max-age=86400"

# The page only talks to its own origin; inline styles are what Chart.js/Cytoscape set.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    cache_control: str
    etag: str


def _media_type(name: str) -> str:
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _TYPES.get(suffix, _PLAIN)


@cache
def assets() -> dict[str, Asset]:
    """Every regular file directly in the `ui` package folder, by name (read once)."""
    found: dict[str, Asset] = {}
    for entry in resources.files(PACKAGE).iterdir():
        name = entry.name
        if not entry.is_file() or name.startswith((".", "_")) or name.endswith(".py"):
            continue
        body = entry.read_bytes()
        cache_control = _VENDOR_CACHE if name in _VENDORED else _OWN_CACHE
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[name] = Asset(body, _media_type(name), cache_control, etag)
    return found


def _serve(name: str, if_none_match: str | None) -> Response:
    asset = assets().get(name)  # a lookup by exact name: no path ever reaches the file system
    if asset is None:
        raise NotFound(f"no dashboard file {name!r}")
    headers = {"Cache-Control": asset.cache_control, "ETag": asset.etag, **_PAGE_HEADERS}
    if if_none_match is not None and asset.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/ui")
async def page(if_none_match: str | None = Header(default=None)) -> Response:
    """The single-page dashboard (token and user are entered in the page, never sent here)."""
    return _serve(INDEX, if_none_match)


@router.get("/ui/static/{name:path}")
async def static(name: str, if_none_match: str | None = Header(default=None)) -> Response:
    """One file of the dashboard package folder (`app.js`, `chart.umd.min.js`, licenses…)."""
    return _serve(name, if_none_match)
