"""The settings tree: one pydantic-settings model, env prefix FLAME_, passed into factories."""

from __future__ import annotations

import functools
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "FLAME_"
_STRUCTURED = (list, dict, tuple, set, frozenset)


class SettingsError(ValueError):
    """A FLAME_* variable that cannot be read (names it)."""


class FlameEnv(PydanticBaseSettingsSource):
    """`FLAME_<FIELD>` environment variables (any case), JSON for lists, dicts and models.

    What pydantic-settings' env source reads, but only the variables that are set: that one
    examines each of the ~55 fields twice a start (~3 ms of CPU, which every forked flamelet
    paid)."""

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        found: dict[str, Any] = {}
        for variable, value in os.environ.items():
            name = variable.lower().removeprefix(PREFIX.lower())
            if len(name) == len(variable) or name not in fields:
                continue
            found[name] = _decoded(variable, value) if _structured(fields[name]) else value
        return found

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads every variable at once."""
        raise NotImplementedError


def _decoded(variable: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise SettingsError(f"{variable} is not valid JSON: {exc}") from None


@functools.cache
def _structured_type(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_structured_type(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, (*_STRUCTURED, BaseModel))


def _structured(field: FieldInfo) -> bool:
    annotation: Any = field.annotation
    return _structured_type(annotation)


class FlameSettings(BaseSettings):
    """Every knob of the control plane and agents; read once per entry point."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment (no .env or secrets files)."""
        return init_settings, FlameEnv(settings_cls)

    home: Path = Field(default_factory=lambda: Path.home() / ".flame")
    # MongoDB: empty URL means the embedded nx-27017 server started by `flame up` / the tests.
    mongo_url: str = ""
    mongo_db: str = "flame"
    # RabbitMQ and the namespace that prefixes every exchange and queue (tests use a unique one).
    rabbit_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    namespace: str = "flame"
    # Consumer queues: attempts at a message before the broker moves it to <ns>.dead-letters,
    # and the wait before a failed message goes back to its queue (doubles with each attempt).
    delivery_limit: int = Field(default=5, ge=1)
    redelivery_delay: float = Field(default=0.5, ge=0)
    # how long the controller holds events while its store is unreachable before returning them
    store_outage_seconds: float = Field(default=300, ge=0, le=86400)
    # REST API
    api_host: str = "127.0.0.1"
    api_port: int = 10100
    api_url: str = ""  # how agents reach the apiserver; defaults to http(s)://api_host:api_port
    # TLS (docs/security.md "TLS"): the apiserver serves HTTPS with this certificate and key
    # (PEM files); every client of the stack (flamelets, deployers, probes, the controller's
    # broker admin client, MongoDB without its own tlsCAFile) trusts `ca_file` (empty: the
    # system's CAs). Brokers use TLS when their URLs say amqps:// (`?cafile=`) or mqtts://.
    api_tls_cert: str = ""
    api_tls_key: str = ""
    ca_file: str = ""
    max_code_bytes: int = 10 * 1024 * 1024
    max_code_files: int = 2000  # entries in a code zip
    max_code_unpacked_bytes: int = 100 * 1024 * 1024  # total uncompressed size (zip bombs)
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)  # any body but a code upload
    # open server-sent event streams (each polls the log): in all, and per user
    max_event_streams: int = Field(default=64, ge=1)
    max_event_streams_per_user: int = Field(default=8, ge=1)
    # what the apiserver keeps of each task's output (the last bytes; older ones are dropped)
    max_task_log_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=12 * 1024 * 1024)
    rpc_timeout: float = 10.0
    # Identity (docs/security.md): sha256 hex of the bootstrap admin token and of the token the
    # stack's own deployer registers its compute with (`flame up` makes both); the deployer
    # presents `registration_token` on POST /computes.
    admin_token_sha256: str = ""
    registration_token_sha256: str = ""
    registration_token: str = ""
    # The control-plane services' shared secret (never given to flamelets or role code): their
    # events and the apiserver's commands carry an HMAC keyed with it (`flame_common.proofs`).
    service_secret: str = ""
    # Controller; its store: `mongo` (shared with the apiserver) or `memory` (one process only)
    tick_seconds: float = 0.5
    controller_store: Literal["mongo", "memory"] = "mongo"
    # Jobs are split into this many partitions by a hash of the job id; each has one writer at a
    # time among the namespace's controllers (every controller of a namespace must agree on it)
    controller_partitions: int = Field(default=8, ge=1, le=256)
    # The brokers jobs' role code uses, one per backend sort (a job whose backend none serves is
    # refused at creation); `flame up` replaces the MQTT one by a Mosquitto of its own unless
    # FLAME_JOB_BROKERS is set.
    job_brokers: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"sort": "rabbitmq", "host": "amqp://guest:guest@127.0.0.1:5672/"},
            {"sort": "mqtt", "host": "mqtt://127.0.0.1:1883"},
        ]
    )
    job_registry: dict[str, str] = Field(default_factory=lambda: {"sort": "dummy", "uri": ""})
    max_tasks_per_job: int = Field(default=1000, ge=1)  # a bigger job is refused (422)
    # RabbitMQ's management API as an administrator (controller only): each running job gets its
    # own broker user limited to its data exchange and queues. Empty: jobs' role code is served
    # the job_brokers URL as it is (shared credentials; the controller warns).
    rabbit_admin_url: str = "http://guest:guest@127.0.0.1:15672/"
    # Mosquitto's dynamic-security plugin as its admin client (controller only), e.g.
    # mqtt://flame-admin:PW@127.0.0.1:1883 or mqtts://… (verified with `ca_file`): each running
    # job gets an MQTT client limited to its topics, with the job's RabbitMQ password. Empty: MQTT
    # role code is served the job_brokers URL as it is (shared access; the controller warns).
    mqtt_admin_url: str = ""
    # Kubernetes deployer (`flame-deployer --kind kubernetes`, docs/kubernetes.md): a YAML or
    # JSON file setting every worker pod's resources (requests/limits, `nvidia.com/gpu`),
    # nodeSelector, tolerations and imagePullSecrets; empty: 250m CPU/500Mi requested, 2Gi limit
    k8s_pod_template: str = ""
    # Agents
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 10.0
    # how often an agent relays what its role code recorded (one task.metrics event at most)
    metrics_interval: float = Field(default=1.0, ge=0.05, le=60)
    stop_grace_seconds: float = 5.0
    # A started job whose tasks on a compute with a deployer (not an unmanaged one) still have no
    # agent after this many seconds fails, naming the computes (no deployer serves them, pods
    # that never start): it never waits silently until maxRunTime.
    deploy_timeout: float = Field(default=600, ge=1, le=604800)
    # how long a flamelet retries its manifest while the apiserver is unreachable or failing
    manifest_patience: float = Field(default=60, ge=0, le=3600)
    # Run the role code in a child forked at agent start-up (no interpreter start-up, shared
    # imports) instead of a fresh `python` process; Linux only.
    warm_start: bool = True
    # Modules the local deployer's zygote imports once (JSON list, e.g. ["torch", "sklearn"]):
    # every warm-started role code inherits them instead of importing them itself (seconds of CPU
    # per task for torch); one that fails to import is reported on stderr and skipped.
    warm_imports: list[str] = Field(default_factory=list, max_length=64)
    # Directories dataset URLs may read besides the task's work dir (JSON list; role code only
    # writes inside its work dir): `file://` datasets and digits caches (flame_sdk.datasets)
    data_roots: list[Path] = Field(default_factory=list)
    # `flame up`'s supervisor: a crashed service restarts after 1 s, the wait doubling up to
    # restart_max_delay; one that crashes restart_limit times within restart_window s stays down.
    restart_max_delay: float = Field(default=30, ge=1)
    restart_limit: int = Field(default=5, ge=1)
    restart_window: float = Field(default=60, gt=0)
    # Prometheus metrics (docs/observability.md): the listener of each service on metrics_host
    # (0: none; a port already taken is logged and skipped); the apiserver serves GET /metrics
    # on its own port. The controller counts jobs and tasks by state every metrics_poll_seconds.
    metrics_host: str = "127.0.0.1"
    metrics_port_controller: int = Field(default=9464, ge=0, le=65535)
    metrics_port_notifier: int = Field(default=9465, ge=0, le=65535)
    metrics_port_deployer: int = Field(default=9466, ge=0, le=65535)
    metrics_poll_seconds: float = Field(default=10, ge=0.1, le=3600)
    # Logging
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def apiserver_url(self) -> str:
        scheme = "https" if self.api_tls_cert else "http"
        return self.api_url or f"{scheme}://{self.api_host}:{self.api_port}"

    def with_overrides(self, **values: Any) -> FlameSettings:
        return self.model_copy(update=values)
