"""A job whose backend no job broker serves is refused at creation, naming the backend."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flame_common.settings import FlameSettings
from flame_controller.memory import MemoryJobStore
from flame_controller.service import Controller
from schemas import commands as c
from schemas.design import DesignSchema
from schemas.errors import Invalid
from schemas.events import EventBase
from schemas.job import JobSpec
from tests.controller.conftest import memory_catalog, mnist

RABBIT_ONLY = [{"sort": "rabbitmq", "host": "amqp://127.0.0.1:5672/"}]


def controller(tmp: Path, **overrides: Any) -> tuple[Controller, MemoryJobStore]:
    settings = FlameSettings(home=tmp, namespace="memory", controller_store="memory", **overrides)
    store = MemoryJobStore(settings.stop_grace_seconds)
    published: list[EventBase] = []
    return Controller(settings, store, memory_catalog(mnist()), published.extend), store


def spec(backend: str) -> JobSpec:
    return JobSpec.model_validate({**mnist().spec, "backend": backend})


@pytest.mark.parametrize(
    ("backend", "brokers", "message"),
    [
        (
            "p2p",
            None,
            "backend 'p2p' is not supported by this platform (supported: mqtt, rabbitmq)",
        ),
        ("local", None, "backend 'local' is not supported"),
        (
            "mqtt",
            RABBIT_ONLY,
            "backend 'mqtt' has no job broker here: FLAME_JOB_BROKERS lists rabbitmq",
        ),
    ],
)
async def test_a_backend_no_broker_serves_is_refused_and_nothing_is_stored(
    tmp_path: Path, backend: str, brokers: list[dict[str, str]] | None, message: str
) -> None:
    overrides = {"job_brokers": brokers} if brokers else {}
    ctl, store = controller(tmp_path, **overrides)
    with pytest.raises(Invalid) as refused:
        await ctl.execute(c.CreateJob(user_id="alice", spec=spec(backend)))
    assert message in str(refused.value)
    assert await store.open_jobs() == []


async def test_a_channel_backend_counts_too(tmp_path: Path) -> None:
    example = mnist()
    schema = example.schema.wire()
    schema["channels"][0]["backend"] = "p2p"
    example = replace(example, schema=DesignSchema.model_validate(schema))
    ctl, _ = controller(tmp_path)
    ctl.planner.catalog = memory_catalog(example)
    with pytest.raises(Invalid, match="a channel's backend 'p2p' is not supported"):
        await ctl.execute(c.CreateJob(user_id="alice", spec=spec("mqtt")))


@pytest.mark.parametrize("backend", ["mqtt", "rabbitmq"])
async def test_the_default_brokers_serve_both_backends(tmp_path: Path, backend: str) -> None:
    ctl, _ = controller(tmp_path)
    created = await ctl.execute(c.CreateJob(user_id="alice", spec=spec(backend)))
    assert created["state"] == "ready"
