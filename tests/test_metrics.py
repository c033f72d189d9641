"""flame_common.metrics: bounded labels, the by-state gauges, the listener."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from flame_common import metrics
from flame_common.embedded import free_port, port_open
from flame_common.settings import FlameSettings


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry: (name, sorted labels) -> value."""
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_names_are_prefixed_and_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "observability.md").read_text()
    names = {m.name for m in metrics.REGISTRY.collect() if not m.name.startswith("process_")}
    assert names and all(n.startswith("flame_") for n in names)
    for name in names:
        exposed = f"{name}_total" if name in _counters() else name
        assert f"`{exposed}`" in doc, f"{exposed} is not in docs/observability.md"


def _counters() -> set[str]:
    return {m.name for m in metrics.REGISTRY.collect() if m.type == "counter"}


def test_event_counters_count_by_service_and_type() -> None:
    before = value("flame_events_consumed_total", service="controller", type="task.metrics")
    metrics.consumed("controller", "task.metrics")
    metrics.consumed("controller", "task.metrics", 2)
    after = value("flame_events_consumed_total", service="controller", type="task.metrics")
    assert after == before + 3
    published = value("flame_events_published_total", service="notifier", type="agent.lost")
    metrics.published("notifier", "agent.lost")
    assert value("flame_events_published_total", service="notifier", type="agent.lost") == (
        published + 1
    )


def test_labels_outside_the_known_sets_become_other() -> None:
    job_id = "65f0c0ffee0123456789abcd"
    metrics.consumed("controller", f"job.{job_id}")
    metrics.published(f"user-{job_id}", "task.assigned")
    metrics.dead_lettered("controller", job_id)
    metrics.timed(metrics.RPC_SECONDS, job_id, job_id, 0.01)
    metrics.set_states(metrics.TASKS, {job_id: 1})
    values = {v for (_, labels), _ in samples().items() for _, v in labels}
    assert not any(job_id in v for v in values)
    assert value("flame_events_consumed_total", service="controller", type="other") >= 1
    assert value("flame_events_published_total", service="other", type="task.assigned") >= 1
    assert value("flame_messages_dead_lettered_total", service="controller", reason="other") >= 1
    assert value("flame_rpc_seconds_count", kind="other", outcome="other") >= 1
    assert value("flame_tasks", state="other") == 1


def test_by_state_gauges_hold_every_state() -> None:
    metrics.set_states(metrics.JOBS, {"completed": 3, "running": 1})
    assert value("flame_jobs", state="completed") == 3
    assert value("flame_jobs", state="running") == 1
    assert value("flame_jobs", state="failed") == 0  # present, at 0
    metrics.set_states(metrics.JOBS, {"completed": 4})
    assert value("flame_jobs", state="running") == 0  # a state that emptied goes back to 0


def test_command_histograms_observe_seconds() -> None:
    before = value("flame_command_seconds_count", kind="job.start", outcome="ok")
    metrics.timed(metrics.COMMAND_SECONDS, "job.start", "ok", 0.02)
    assert value("flame_command_seconds_count", kind="job.start", outcome="ok") == before + 1
    assert value("flame_command_seconds_bucket", kind="job.start", le="0.025", outcome="ok") >= 1


def test_serving_answers_with_the_registry_and_stops() -> None:
    port = free_port()
    metrics.WORKERS_STARTED.inc()
    with metrics.serving("127.0.0.1", port) as server:
        assert server is not None and server.port == port
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert "flame_workers_started_total" in response.text
        assert "process_cpu_seconds_total" in response.text
    assert not port_open("127.0.0.1", port)  # closed again


def test_port_zero_is_off_and_a_taken_port_is_skipped() -> None:
    assert metrics.serve("127.0.0.1", 0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert metrics.serve("127.0.0.1", taken.getsockname()[1]) is None


def test_settings_ports(monkeypatch) -> None:
    settings = FlameSettings()
    assert (
        settings.metrics_port_controller,
        settings.metrics_port_notifier,
        settings.metrics_port_deployer,
    ) == (9464, 9465, 9466)
    assert settings.metrics_host == "127.0.0.1"
    monkeypatch.setenv("FLAME_METRICS_PORT_NOTIFIER", "0")
    assert FlameSettings().metrics_port_notifier == 0


def test_status_names_each_services_metrics_url() -> None:
    from flame_sdk.cli.stack import metrics_url

    settings = FlameSettings(metrics_port_notifier=0, metrics_port_deployer=9999)
    api = "https://127.0.0.1:10100"
    assert metrics_url(settings, "apiserver", api) == f"{api}/metrics"
    assert metrics_url(settings, "controller", api) == "http://127.0.0.1:9464/metrics"
    assert metrics_url(settings, "deployer", api) == "http://127.0.0.1:9999/metrics"
    assert metrics_url(settings, "notifier", api) == ""  # off
    assert metrics_url(settings, "mongo", api) == ""


async def test_the_last_attempt_counts_a_dead_letter_for_its_service() -> None:
    from flame_common.redelivery import before_return

    settings = FlameSettings(delivery_limit=2, redelivery_delay=0)
    labels = {"service": "controller", "reason": "delivery_limit"}
    before = value("flame_messages_dead_lettered_total", **labels)
    await before_return(settings, "e1234.controller.events", [("m1", 2), ("m2", 1)], "boom")
    assert value("flame_messages_dead_lettered_total", **labels) == before + 1
    deployer = {"service": "deployer", "reason": "delivery_limit"}
    before = value("flame_messages_dead_lettered_total", **deployer)
    await before_return(settings, "deployer.edge-7", [("m3", 5)], "boom")
    assert value("flame_messages_dead_lettered_total", **deployer) == before + 1
