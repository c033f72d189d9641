"""docs/openapi.json from the apiserver app: `python -m flame_apiserver.openapi_doc [--write]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flame_apiserver.app import create_app
from flame_common import gendoc
from flame_common.settings import FlameSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
COMMAND = "python -m flame_apiserver.openapi_doc --write"


def spec() -> dict[str, Any]:
    """The OpenAPI document of the app (built only: nothing connects before its lifespan)."""
    app = create_app(FlameSettings(mongo_url="", log_json=False))
    document: dict[str, Any] = app.openapi()
    return document


def render() -> str:
    return json.dumps(spec(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    gendoc.run(DOC, render, argv)


if __name__ == "__main__":
    main()
