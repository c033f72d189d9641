"""Kubernetes adapter: a `batch/v1 Job` plus a Secret (the task key) per task, via client models."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol

from kubernetes import client as k8s

from flame_common.logs import get_logger
from flame_common.settings import FlameSettings
from flame_controller.deployers.base import Deployer, WorkerSpec

log = get_logger(__name__)

KEY_FIELD = "key"


class KubeApi(Protocol):
    """The few cluster calls the adapter makes (a fake stands in for tests)."""

    def create_secret(self, namespace: str, body: k8s.V1Secret) -> Any: ...
    def delete_secret(self, namespace: str, name: str) -> Any: ...
    def create_job(self, namespace: str, body: k8s.V1Job) -> Any: ...
    def delete_job(self, namespace: str, name: str) -> Any: ...


class ClusterApi:
    """`KubeApi` over the official client (loads kubeconfig or the in-cluster service account)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)

    def create_secret(self, namespace: str, body: k8s.V1Secret) -> Any:
        return self._core.create_namespaced_secret(namespace, body)

    def delete_secret(self, namespace: str, name: str) -> Any:
        return self._core.delete_namespaced_secret(name, namespace)

    def create_job(self, namespace: str, body: k8s.V1Job) -> Any:
        return self._batch.create_namespaced_job(namespace, body)

    def delete_job(self, namespace: str, name: str) -> Any:
        return self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background")


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


def _labels(spec: WorkerSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "flamelet",
        "app.kubernetes.io/part-of": "flame",
        "flame.io/job-id": _dns_label(spec.job_id),
        "flame.io/task-id": _dns_label(spec.task_id),
    }


def secret_manifest(spec: WorkerSpec) -> k8s.V1Secret:
    """The task key, kept out of the Job spec."""
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name=worker_name(spec), labels=_labels(spec)),
        type="Opaque",
        string_data={KEY_FIELD: spec.key},
    )


def job_manifest(spec: WorkerSpec, *, image: str, settings: FlameSettings) -> k8s.V1Job:
    """A run-once Job whose pod runs `flamelet` for one task."""
    name = worker_name(spec)
    env = [
        k8s.V1EnvVar(name="FLAME_RABBIT_URL", value=settings.rabbit_url),
        k8s.V1EnvVar(name="FLAME_NAMESPACE", value=settings.namespace),
        k8s.V1EnvVar(name="FLAME_HEARTBEAT_INTERVAL", value=str(settings.heartbeat_interval)),
        k8s.V1EnvVar(name="FLAME_STOP_GRACE_SECONDS", value=str(settings.stop_grace_seconds)),
        k8s.V1EnvVar(
            name="FLAME_TASK_KEY",
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=name, key=KEY_FIELD)
            ),
        ),
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
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": "250m", "memory": "500Mi"}, limits={"memory": "2Gi"}
        ),
    )
    pod = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=_labels(spec)),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            containers=[container],
            termination_grace_period_seconds=int(settings.stop_grace_seconds) + 5,
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
    """Workers as Kubernetes Jobs in one namespace; calls run in a thread (the client blocks)."""

    def __init__(
        self, api: KubeApi, settings: FlameSettings, *, namespace: str, image: str
    ) -> None:
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.image = image
        self._started: dict[tuple[str, str], WorkerSpec] = {}

    async def start(self, spec: WorkerSpec) -> str:
        name = worker_name(spec)
        job = job_manifest(spec, image=self.image, settings=self.settings)
        for create in (
            lambda: self.api.create_secret(self.namespace, secret_manifest(spec)),
            lambda: self.api.create_job(self.namespace, job),
        ):
            try:
                await asyncio.to_thread(create)
            except k8s.ApiException as exc:
                if _status(exc) != 409:  # 409: exists already (a redelivered request)
                    raise
        self._started[(spec.job_id, spec.task_id)] = spec
        return f"k8s-{self.namespace}/{name}"

    async def stop(self, job_id: str, task_ids: list[str]) -> None:
        for task_id in task_ids:
            spec = self._started.pop((job_id, task_id), None)
            name = worker_name(spec or WorkerSpec(job_id, task_id, "", ""))
            for delete in (self.api.delete_job, self.api.delete_secret):
                try:
                    await asyncio.to_thread(delete, self.namespace, name)
                except k8s.ApiException as exc:
                    if _status(exc) != 404:
                        log.warning("cannot delete", name=name, error=str(exc))

    async def close(self) -> None:
        """Workers outlive this deployer on a cluster; nothing to stop here."""
