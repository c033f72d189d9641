"""docs/settings.md, docs/openapi.json and docs/asyncapi.json match what generates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flame_apiserver import openapi_doc
from flame_common import settings_doc
from flame_common.settings import FlameSettings
from flame_controller import asyncapi_doc
from schemas.events import EVENT_CLASSES

GENERATORS = {"settings": settings_doc, "openapi": openapi_doc, "asyncapi": asyncapi_doc}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_the_generated_doc_is_up_to_date(name: str) -> None:
    generator = GENERATORS[name]
    doc: Path = generator.DOC
    assert doc.is_file(), f"{doc} is missing: run `{generator.COMMAND}`"
    assert doc.read_text() == generator.render(), f"{doc} is stale: run `{generator.COMMAND}`"


def test_every_setting_is_in_the_settings_doc() -> None:
    text = settings_doc.DOC.read_text()
    missing = [n for n in FlameSettings.model_fields if f"`FLAME_{n.upper()}`" not in text]
    assert not missing, f"not in {settings_doc.DOC}: {missing}; run `{settings_doc.COMMAND}`"


def test_the_settings_doc_carries_the_source_comments() -> None:
    text = settings_doc.render()
    assert '| `FLAME_API_URL` | `str` | `""` | how agents reach the apiserver' in text
    assert "RabbitMQ and the namespace that prefixes every exchange and queue" in text


def test_every_event_type_has_a_channel_and_a_payload_schema() -> None:
    spec = json.loads(asyncapi_doc.DOC.read_text())
    for event_type, cls in EVENT_CLASSES.items():
        assert f"events/{event_type}" in spec["channels"], event_type
        message = spec["components"]["messages"][event_type]
        assert message["payload"]["$ref"].endswith(f"/{cls.__name__}")
        assert cls.__name__ in spec["components"]["schemas"]
    bound = spec["channels"]["events/worker.requested"]["bindings"]["amqp"]["x-queues"]
    assert bound == ["{namespace}.deployer.{computeId}"]


def test_the_openapi_doc_lists_the_job_routes() -> None:
    paths = json.loads(openapi_doc.DOC.read_text())["paths"]
    for path in ("/users/{user}/jobs", "/users/{user}/jobs/{job_id}/metrics"):
        assert path in paths, path
