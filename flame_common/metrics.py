"""Prometheus metrics of the services: one registry per process, the series, their endpoints."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.process_collector import ProcessCollector

from flame_common.logs import get_logger
from schemas.events import EVENT_CLASSES
from schemas.states import JobState

__all__ = [
    "AGENTS_LIVE",
    "COMMAND_SECONDS",
    "CONTENT_TYPE_LATEST",
    "DEAD_LETTERED",
    "EVENTS_CONSUMED",
    "EVENTS_PUBLISHED",
    "EVENT_TYPES",
    "JOBS",
    "OUTBOX_BACKLOG",
    "OUTBOX_PUBLISH_FAILURES",
    "REGISTRY",
    "RPC_SECONDS",
    "STATES",
    "TASKS",
    "WORKERS_FAILED",
    "WORKERS_STARTED",
    "MetricsServer",
    "consumed",
    "dead_lettered",
    "exposition",
    "published",
    "serve",
    "serving",
    "set_states",
    "timed",
]

log = get_logger(__name__)

# Every label value is drawn from a closed set (event types, states, command kinds, services,
# outcomes, reasons): never a job, task, user, agent or compute id.
OTHER = "other"  # an event type, state or kind outside the known set
SERVICES = frozenset({"apiserver", "controller", "notifier", "deployer"})
EVENT_TYPES = frozenset(EVENT_CLASSES)
COMMAND_KINDS = frozenset(
    {"job.create", "job.update", "job.delete", "job.start", "job.stop", "task.report"}
)
OUTCOMES = frozenset({"ok", "error", "unavailable"})
DEAD_LETTER_REASONS = frozenset({"delivery_limit", "undecodable", "unproven", "unroutable"})
STATES = tuple(s.value for s in JobState)  # jobs' and tasks' states
# seconds: an RPC is a broker round trip plus a MongoDB write (ms) up to the RPC timeout (10 s)
_RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

disable_created_metrics()  # no *_created series: the counters' start shows in their resets
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes…

EVENTS_CONSUMED = Counter(
    "flame_events_consumed",
    "Events a service took from the bus (decoded), by event type.",
    ["service", "type"],
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "flame_events_published",
    "Events a service published (confirmed by the broker where it waits for it), by type.",
    ["service", "type"],
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "flame_messages_dead_lettered",
    "Messages a service sent (or had the broker send) to the namespace's dead letters.",
    ["service", "reason"],
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "flame_outbox_backlog",
    "Events the controller appended to the log and not yet published (confirmed).",
    registry=REGISTRY,
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "flame_outbox_publish_failures",
    "Failed outbox publish attempts (nacked, timed out, channel lost, broker blocked).",
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "flame_rpc_seconds",
    "Apiserver side of a controller command: from the request to the controller's reply.",
    ["kind", "outcome"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "flame_command_seconds",
    "Controller side of a command: decoding and executing it (the reply excluded).",
    ["kind", "outcome"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)
JOBS = Gauge(
    "flame_jobs",
    "Jobs by state, as the controller's projections hold them (refreshed periodically).",
    ["state"],
    registry=REGISTRY,
)
TASKS = Gauge(
    "flame_tasks",
    "Tasks by state, as the controller's projections hold them (refreshed periodically).",
    ["state"],
    registry=REGISTRY,
)
AGENTS_LIVE = Gauge(
    "flame_agents_live",
    "Agents the notifier watches (registered, heartbeating, their task not ended).",
    registry=REGISTRY,
)
WORKERS_STARTED = Counter(
    "flame_workers_started",
    "Workers (flamelets, Kubernetes Jobs) a deployer started.",
    registry=REGISTRY,
)
WORKERS_FAILED = Counter(
    "flame_workers_failed",
    "Workers a deployer could not start or that died on their own (worker.failed).",
    registry=REGISTRY,
)

_children: dict[tuple[Counter, str, str], Any] = {}  # cached label children (the hot path)


def _bounded(value: str, known: Iterable[str]) -> str:
    return value if value in known else OTHER


def _child(counter: Counter, service: str, value: str, known: Iterable[str]) -> Any:
    key = (counter, service, value)
    child = _children.get(key)
    if child is None:
        labels = (_bounded(service, SERVICES), _bounded(value, known))
        child = _children[key] = counter.labels(*labels)
    return child


def consumed(service: str, event_type: str, n: int = 1) -> None:
    """Count `n` consumed events of `event_type` (a type outside `EVENT_TYPES` counts as other)."""
    _child(EVENTS_CONSUMED, service, event_type, EVENT_TYPES).inc(n)


def published(service: str, event_type: str, n: int = 1) -> None:
    """Count `n` published events of `event_type`."""
    _child(EVENTS_PUBLISHED, service, event_type, EVENT_TYPES).inc(n)


def dead_lettered(service: str, reason: str, n: int = 1) -> None:
    """Count `n` messages dead-lettered for `reason` (one of `DEAD_LETTER_REASONS`)."""
    if n:
        _child(DEAD_LETTERED, service, reason, DEAD_LETTER_REASONS).inc(n)


def timed(histogram: Histogram, kind: str, outcome: str, seconds: float) -> None:
    """Observe one command's duration under its kind and outcome (both bounded)."""
    labels = (_bounded(kind, COMMAND_KINDS), _bounded(outcome, OUTCOMES))
    histogram.labels(*labels).observe(seconds)


def set_states(gauge: Gauge, counts: Mapping[str, int]) -> None:
    """Set a by-state gauge from `counts`; every known state is present (0 when absent), unknown
    states are summed under other."""
    values = dict.fromkeys(STATES, 0)
    for state, count in counts.items():
        key = _bounded(state, STATES)
        values[key] = values.get(key, 0) + count
    for state, count in values.items():
        gauge.labels(state).set(count)


def exposition() -> bytes:
    """The registry in Prometheus' text format (the apiserver's GET /metrics)."""
    return generate_latest(REGISTRY)


class MetricsServer:
    """A running metrics listener (prometheus_client's WSGI server in a daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(host: str, port: int) -> MetricsServer | None:
    """Serve the registry on http://host:port/metrics (any path answers) until `close()`; None
    when `port` is 0 or cannot be bound (logged: the service runs on without metrics)."""
    if not port:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.error("metrics endpoint not started", host=host, port=port, error=str(exc))
        return None
    log.info("metrics endpoint started", url=f"http://{host}:{port}/metrics")
    return MetricsServer(server, thread)


@contextmanager
def serving(host: str, port: int) -> Iterator[MetricsServer | None]:
    """`serve` for the duration of a block."""
    server = serve(host, port)
    try:
        yield server
    finally:
        if server is not None:
            server.close()
