"""Kubernetes adapter: manifest shape (validated offline against the API schemas) and API calls."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s

from flame_common.documents import TaskDoc
from flame_common.settings import FlameSettings
from flame_controller.deployers.app import running_deployer
from flame_controller.deployers.base import WorkerSpec
from flame_controller.deployers.kubernetes import (
    KubernetesDeployer,
    job_manifest,
    secret_manifest,
    worker_name,
)
from flame_controller.deployers.main import main as deployer_main
from schemas.events import WorkerCreatedEvent, WorkerFailedEvent
from tests.agents.helpers import publish, requested
from tests.support.tap import EventTap
from tests.support.wait import eventually

SPEC = WorkerSpec("65f0c0ffee0123456789abcd", "A" * 40, "s3cret", "http://api:10100")
K8S_VERSION = "1.30"


def as_dict(obj: Any) -> dict[str, Any]:
    return k8s.ApiClient().sanitize_for_serialization(obj)


def test_job_manifest_is_a_valid_run_once_job() -> None:
    job = as_dict(job_manifest(SPEC, image="flame:dev", settings=FlameSettings(namespace="ns1")))
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "flame:dev" and container["command"] == ["flamelet"]
    assert container["args"] == [
        "--job",
        SPEC.job_id,
        "--task",
        SPEC.task_id,
        "--apiserver",
        SPEC.apiserver,
        "--prefetch",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["FLAME_NAMESPACE"]["value"] == "ns1"
    assert env["FLAME_TASK_KEY"]["valueFrom"]["secretKeyRef"]["name"] == worker_name(SPEC)
    assert "s3cret" not in str(job)  # the key lives only in the Secret


def test_secret_manifest_is_valid_and_holds_the_key() -> None:
    secret = as_dict(secret_manifest(SPEC))
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["stringData"] == {"key": "s3cret"}


@pytest.mark.parametrize("task_id", ["A" * 40, "x_y.z", "-" * 80])
def test_worker_names_are_dns_labels(task_id: str) -> None:
    name = worker_name(WorkerSpec("j" * 30, task_id, "", ""))
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert name == name.lower() and all(c.isalnum() or c == "-" for c in name)


class FakeCluster:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Any] = {}

    def _create(self, kind: str, namespace: str, body: Any) -> None:
        key = (kind, namespace, body.metadata.name)
        if key in self.objects:
            raise k8s.ApiException(status=409, reason="AlreadyExists")
        self.objects[key] = body

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        if self.objects.pop((kind, namespace, name), None) is None:
            raise k8s.ApiException(status=404, reason="NotFound")

    def create_secret(self, namespace: str, body: Any) -> None:
        self._create("Secret", namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        self._delete("Secret", namespace, name)

    def create_job(self, namespace: str, body: Any) -> None:
        self._create("Job", namespace, body)

    def delete_job(self, namespace: str, name: str) -> None:
        self._delete("Job", namespace, name)


async def test_deployer_creates_and_deletes_jobs_idempotently() -> None:
    cluster = FakeCluster()
    deployer = KubernetesDeployer(cluster, FlameSettings(), namespace="flame", image="flame:dev")
    worker = await deployer.start(SPEC)
    assert worker == f"k8s-flame/{worker_name(SPEC)}"
    assert await deployer.start(SPEC) == worker  # a redelivered request changes nothing
    assert {k[0] for k in cluster.objects} == {"Job", "Secret"}
    await deployer.stop(SPEC.job_id, [SPEC.task_id, "unknown"])
    assert cluster.objects == {}


@pytest.mark.integration
async def test_flame_deployer_serves_a_compute_with_kubernetes_jobs(
    settings: FlameSettings, db, tap: EventTap
) -> None:
    cluster = FakeCluster()
    deployer = KubernetesDeployer(cluster, settings, namespace="flame", image="flame:dev")
    await TaskDoc(job_id="j1", task_id="a", role="trainer", key="key-a").insert()
    name = worker_name(WorkerSpec("j1", "a", "", ""))
    async with running_deployer(settings, register=False, deployer=deployer):
        await publish(settings, requested("j1", ["a"]))
        created = await tap.wait_for(WorkerCreatedEvent)
        assert created.task_id == "a" and created.payload.worker_id == f"k8s-flame/{name}"
        job = as_dict(cluster.objects[("Job", "flame", name)])
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["FLAME_NAMESPACE"] == settings.namespace
        assert as_dict(cluster.objects[("Secret", "flame", name)])["stringData"] == {"key": "key-a"}
        await publish(settings, requested("j1", ["a"], type_="worker.released"))
        await eventually(lambda: not cluster.objects, what="no cluster objects left")
    assert not tap.of(WorkerFailedEvent)


def test_kubernetes_deployer_needs_an_image(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        deployer_main(["--kind", "kubernetes"])
    assert exit_info.value.code == 2
    assert "--kind kubernetes needs --image" in capsys.readouterr().err


def test_kubernetes_deployer_without_a_cluster_says_so(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(SystemExit) as exit_info:
        deployer_main(["--kind", "kubernetes", "--image", "flame:dev"])
    assert exit_info.value.code == 2
    assert "no Kubernetes configuration" in capsys.readouterr().err
