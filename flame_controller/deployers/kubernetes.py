"""Kubernetes adapter: a `batch/v1 Job` plus a Secret (task key, broker URL) per task; watches
their pods and reports a worker whose pod fails or cannot start."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from typing import Any, Protocol

from kubernetes import client as k8s

from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import Deployer, WorkerSpec
from flame_controller.deployers.pod_status import pod_failure
from flame_controller.deployers.pod_template import PodTemplate
from flame_controller.deployers.pod_watch import WATCH_SECONDS, PodWatcher

log = get_logger(__name__)

KEY_FIELD = "key"
REQUEST_TIMEOUT = 20  # seconds: one call, or silence beyond a watch's own timeout
BROKER_FIELD = "rabbit-url"  # the agent bus URL holds the broker's credentials


class KubeApi(Protocol):
    """The few cluster calls the adapter makes (a fake stands in for tests)."""

    def create_secret(self, namespace: str, body: k8s.V1Secret) -> Any: ...
    def delete_secret(self, namespace: str, name: str) -> Any: ...
    def create_job(self, namespace: str, body: k8s.V1Job) -> Any: ...
    def delete_job(self, namespace: str, name: str) -> Any: ...
    def list_pods(self, namespace: str, selector: str) -> tuple[list[k8s.V1Pod], str]: ...
    def watch_pods(
        self, namespace: str, selector: str, version: str, seconds: int
    ) -> Iterator[tuple[str, k8s.V1Pod]]: ...


class ClusterApi:
    """`KubeApi` over the official client (loads kubeconfig or the in-cluster service account)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)

    def create_secret(self, namespace: str, body: k8s.V1Secret) -> Any:
        return self._core.create_namespaced_secret(
            namespace, body, _request_timeout=REQUEST_TIMEOUT
        )

    def delete_secret(self, namespace: str, name: str) -> Any:
        return self._core.delete_namespaced_secret(
            name, namespace, _request_timeout=REQUEST_TIMEOUT
        )

    def create_job(self, namespace: str, body: k8s.V1Job) -> Any:
        return self._batch.create_namespaced_job(namespace, body, _request_timeout=REQUEST_TIMEOUT)

    def delete_job(self, namespace: str, name: str) -> Any:
        return self._batch.delete_namespaced_job(
            name, namespace, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT
        )

    def list_pods(self, namespace: str, selector: str) -> tuple[list[k8s.V1Pod], str]:
        pods = self._core.list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        version = pods.metadata.resource_version if pods.metadata is not None else None
        return list(pods.items or []), str(version or "")

    def watch_pods(
        self, namespace: str, selector: str, version: str, seconds: int
    ) -> Iterator[tuple[str, k8s.V1Pod]]:
        from kubernetes import watch

        events = watch.Watch(return_type=k8s.V1Pod).stream(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=selector,
            resource_version=version,
            timeout_seconds=seconds,  # the server ends the stream; the client waits a bit more
            _request_timeout=(REQUEST_TIMEOUT, seconds + REQUEST_TIMEOUT),
        )
        for event in events:
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                yield event["type"], event["object"]


def cluster_api() -> ClusterApi:
    """The cluster of the pod's service account, else of the kubeconfig (`KUBECONFIG`).

    Raises `RuntimeError` naming both attempts when neither is available.
    """
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as kubeconfig:
            raise RuntimeError(
                f"no Kubernetes configuration: not in a cluster ({in_cluster}) and no usable "
                f"kubeconfig ({kubeconfig})"
            ) from None
    return ClusterApi(k8s.ApiClient())


def _dns_label(text: str, limit: int = 63) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:limit].rstrip("-") or "x"


def worker_name(spec: WorkerSpec) -> str:
    """`flame-agent-<job>-<task>`, a valid DNS-1123 label (at most 63 characters)."""
    return _dns_label(f"flame-agent-{spec.job_id[:12]}-{spec.task_id[:32]}")


WORKER_LABELS = {"app.kubernetes.io/name": "flamelet", "app.kubernetes.io/part-of": "flame"}
JOB_LABEL = "flame.io/job-id"
TASK_LABEL = "flame.io/task-id"
WORKER_SELECTOR = ",".join(f"{k}={v}" for k, v in WORKER_LABELS.items())  # the watched pods


def _labels(spec: WorkerSpec) -> dict[str, str]:
    return {
        **WORKER_LABELS,
        JOB_LABEL: _dns_label(spec.job_id),
        TASK_LABEL: _dns_label(spec.task_id),
    }


def secret_manifest(spec: WorkerSpec, settings: FlameSettings) -> k8s.V1Secret:
    """The task key and the broker URL (with its password), kept out of the Job spec."""
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name=worker_name(spec), labels=_labels(spec)),
        type="Opaque",
        string_data={KEY_FIELD: spec.key, BROKER_FIELD: settings.rabbit_url},
    )


def _from_secret(env_name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=env_name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)),
    )


def job_manifest(
    spec: WorkerSpec,
    *,
    image: str,
    settings: FlameSettings,
    template: PodTemplate | None = None,
) -> k8s.V1Job:
    """A run-once Job whose pod runs `flamelet` for one task, shaped by the pod `template`
    (resources, nodeSelector, tolerations, imagePullSecrets; default: `PodTemplate()`)."""
    template = template or PodTemplate()
    name = worker_name(spec)
    env = [
        _from_secret("FLAME_RABBIT_URL", name, BROKER_FIELD),
        k8s.V1EnvVar(name="FLAME_NAMESPACE", value=settings.namespace),
        k8s.V1EnvVar(name="FLAME_HEARTBEAT_INTERVAL", value=str(settings.heartbeat_interval)),
        k8s.V1EnvVar(name="FLAME_STOP_GRACE_SECONDS", value=str(settings.stop_grace_seconds)),
        _from_secret("FLAME_TASK_KEY", name, KEY_FIELD),
    ]
    container = k8s.V1Container(
        name="flamelet",
        image=image,
        command=["flamelet"],
        args=[
            *("--job", spec.job_id, "--task", spec.task_id, "--apiserver", spec.apiserver),
            "--prefetch",  # the job is active: its task config is final
        ],
        env=env,
        resources=template.container_resources(),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
    )
    pod = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=_labels(spec)),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            containers=[container],
            termination_grace_period_seconds=int(settings.stop_grace_seconds) + 5,
            automount_service_account_token=False,  # workers never call the cluster API
            **template.pod_fields(),
        ),
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(name=name, labels=_labels(spec)),
        spec=k8s.V1JobSpec(backoff_limit=0, ttl_seconds_after_finished=600, template=pod),
    )


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None) if isinstance(exc, k8s.ApiException) else None


class KubernetesDeployer(Deployer):
    """Workers as Kubernetes Jobs in one namespace; calls run in a thread (the client blocks).

    From `open()` to `close()` it watches the pods of its workers (`WORKER_SELECTOR` in its
    namespace) and reports each worker started here whose pod failed or cannot start
    (`pod_status.pod_failure`) once through `on_failure`, then deletes its Job and Secret.
    """

    def __init__(
        self,
        api: KubeApi,
        settings: FlameSettings,
        *,
        namespace: str,
        image: str,
        template: PodTemplate | None = None,
        watch_seconds: int = WATCH_SECONDS,
        retry_first: float = 1.0,
    ) -> None:
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.image = image
        self.template = template or PodTemplate()
        self.watch_seconds = watch_seconds
        self.retry_first = retry_first
        self._started: dict[tuple[str, str], WorkerSpec] = {}
        self._watcher: PodWatcher | None = None
        self._watching: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start watching the pods of the workers (until `close()`)."""
        if self._watching is None:
            self._watcher = PodWatcher(
                self.api,
                self.namespace,
                WORKER_SELECTOR,
                self._on_pod,
                watch_seconds=self.watch_seconds,
                retry_first=self.retry_first,
            )
            self._watching = asyncio.create_task(self._watcher.run(), name="flame-pod-watch")

    async def start(self, spec: WorkerSpec) -> str:
        name = worker_name(spec)
        job = job_manifest(spec, image=self.image, settings=self.settings, template=self.template)
        secret = secret_manifest(spec, self.settings)
        self._started[(spec.job_id, spec.task_id)] = spec  # watched from before its pod exists
        for create in (
            lambda: self.api.create_secret(self.namespace, secret),
            lambda: self.api.create_job(self.namespace, job),
        ):
            try:
                await asyncio.to_thread(create)
            except k8s.ApiException as exc:
                if _status(exc) != 409:  # 409: exists already (a redelivered request)
                    self._started.pop((spec.job_id, spec.task_id), None)
                    raise
        return f"k8s-{self.namespace}/{name}"

    async def stop(self, job_id: str, task_ids: list[str]) -> None:
        for task_id in task_ids:
            spec = self._started.pop((job_id, task_id), None)  # its pod is no longer watched
            await self._delete(worker_name(spec or WorkerSpec(job_id, task_id, "", "")))

    async def _delete(self, name: str) -> None:
        for delete in (self.api.delete_job, self.api.delete_secret):
            try:
                await asyncio.to_thread(delete, self.namespace, name)
            except k8s.ApiException as exc:
                if _status(exc) != 404:
                    log.warning("cannot delete", name=name, error=str(exc))

    def _worker_of(self, pod: k8s.V1Pod) -> WorkerSpec | None:
        """The worker started here that `pod` runs, if any (else a pod of another deployer, or
        one this deployer released or already reported)."""
        labels = (pod.metadata.labels if pod.metadata is not None else None) or {}
        key = (labels.get(JOB_LABEL), labels.get(TASK_LABEL))
        for spec in self._started.values():
            if (_dns_label(spec.job_id), _dns_label(spec.task_id)) == key:
                return spec
        return None

    async def _on_pod(self, pod: k8s.V1Pod) -> None:
        spec = self._worker_of(pod)
        reason = pod_failure(pod) if spec is not None else None
        if spec is None or reason is None:
            return
        self._started.pop((spec.job_id, spec.task_id), None)  # reported once
        if self.on_failure is None:
            log.warning("worker pod failed", task_id=spec.task_id, reason=reason)
        else:
            try:
                await self.on_failure(spec.job_id, spec.task_id, reason)
            except Exception as exc:  # the watch goes on; the deploy timeout is the fallback
                log.error("cannot report a failed worker", task_id=spec.task_id, error=str(exc))
        await self._delete(worker_name(spec))

    async def close(self) -> None:
        """Stop watching pods; workers outlive this deployer on a cluster."""
        if self._watcher is not None:
            self._watcher.stop()
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
