"""Kubernetes adapter: manifest shape (validated offline against the API schemas), the worker
pod template, and API calls."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
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
from flame_controller.deployers.pod_template import (
    PodTemplate,
    PodTemplateError,
    load_pod_template,
    parse_pod_template,
)
from schemas.events import WorkerCreatedEvent, WorkerFailedEvent
from tests.agents.helpers import publish, requested
from tests.support.tap import EventTap
from tests.support.wait import eventually

SPEC = WorkerSpec("65f0c0ffee0123456789abcd", "A" * 40, "s3cret", "http://api:10100")
K8S_VERSION = "1.30"
BROKER = "amqp://flame:br0ker-pw@rabbitmq:5672/"
GPU_TEMPLATE = {
    "resources": {
        "requests": {"cpu": 2, "memory": "8Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": 1},
    },
    "nodeSelector": {"accelerator": "nvidia-l4"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "imagePullSecrets": ["regcred", {"name": "mirror"}],
}


def as_dict(obj: Any) -> dict[str, Any]:
    return k8s.ApiClient().sanitize_for_serialization(obj)


def test_job_manifest_is_a_valid_run_once_job() -> None:
    settings = FlameSettings(namespace="ns1", rabbit_url=BROKER)
    job = as_dict(job_manifest(SPEC, image="flame:dev", settings=settings))
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
    assert env["FLAME_TASK_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": worker_name(SPEC),
        "key": "key",
    }
    # the broker URL holds the service account's password: from the Secret, never a value
    assert "value" not in env["FLAME_RABBIT_URL"]
    assert env["FLAME_RABBIT_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": worker_name(SPEC),
        "key": "rabbit-url",
    }
    assert "s3cret" not in str(job) and "br0ker-pw" not in str(job)  # only in the Secret
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "500Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & set(pod)


def test_secret_manifest_is_valid_and_holds_the_key_and_broker_url() -> None:
    secret = as_dict(secret_manifest(SPEC, FlameSettings(rabbit_url=BROKER)))
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["stringData"] == {"key": "s3cret", "rabbit-url": BROKER}


def test_a_broken_worker_job_is_refused_by_the_validator() -> None:
    """The offline validation can fail: a misspelt field, a quantity that is not a string."""
    job = as_dict(job_manifest(SPEC, image="flame:dev", settings=FlameSettings()))
    job["spec"]["template"]["spec"]["nodeSelectr"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    job = as_dict(job_manifest(SPEC, image="flame:dev", settings=FlameSettings()))
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["gpu"] = {"n": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_pod_template_shapes_the_worker_pod() -> None:
    template = parse_pod_template(GPU_TEMPLATE)
    job = as_dict(
        job_manifest(SPEC, image="flame:dev", settings=FlameSettings(), template=template)
    )
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoExecute",
            "tolerationSeconds": 60,
        },
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"resources": {"limits": {"memory": "2GG"}}}, "resources.limits: memory: '2GG' is not"),
        (
            {"resources": {"limits": {"nvidia.com/gpu": 0.5}}},
            "nvidia.com/gpu: '0.5' is not a whole",
        ),
        (
            {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}}},
            "must equal its limit",
        ),
        ({"resources": {"requests": {"nvidia.com/gpu": 1}}}, "needs a limit"),
        (
            {"resources": {"requests": {"memory": "4Gi"}, "limits": {"memory": "1Gi"}}},
            "memory: request 4Gi is above limit 1Gi",
        ),
        ({"nodeSelector": {"gpu": True}}, "nodeSelector.gpu: Input should be a valid string"),
        ({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}, "takes no value"),
        ({"tolerations": [{"key": "a", "effect": "NoSchedul"}]}, "tolerations.0.effect"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "needs effect NoExecute"),
        ({"imagePullSecret": ["regcred"]}, "imagePullSecret: unknown field (known: resources"),
        (["resources"], "a mapping of pod template fields"),
    ],
)
def test_invalid_pod_templates_are_refused_naming_the_field(template: Any, message: str) -> None:
    with pytest.raises(PodTemplateError) as error:
        parse_pod_template(template)
    assert message in str(error.value)


def test_pod_template_files_yaml_json_and_missing(tmp_path: Path) -> None:
    as_yaml = tmp_path / "template.yaml"
    as_yaml.write_text("nodeSelector:\n  pool: gpu\n")
    assert load_pod_template(str(as_yaml)).node_selector == {"pool": "gpu"}
    assert load_pod_template(str(as_yaml)).resources == PodTemplate().resources  # defaults kept
    as_json = tmp_path / "template.json"
    as_json.write_text(json.dumps(GPU_TEMPLATE))
    assert load_pod_template(str(as_json)) == parse_pod_template(GPU_TEMPLATE)
    assert load_pod_template("") == PodTemplate()
    with pytest.raises(
        PodTemplateError, match=r"FLAME_K8S_POD_TEMPLATE .*missing.yaml: cannot read"
    ):
        load_pod_template(str(tmp_path / "missing.yaml"))
    as_yaml.write_text("resources: [unclosed\n")
    with pytest.raises(PodTemplateError, match="not YAML or JSON"):
        load_pod_template(str(as_yaml))


@pytest.mark.parametrize("task_id", ["A" * 40, "x_y.z", "-" * 80])
def test_worker_names_are_dns_labels(task_id: str) -> None:
    name = worker_name(WorkerSpec("j" * 30, task_id, "", ""))
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert name == name.lower() and all(c.isalnum() or c == "-" for c in name)


def _selects(selector: str, labels: dict[str, str] | None) -> bool:
    wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
    return wanted.items() <= (labels or {}).items()


class FakeCluster:
    """Secrets, Jobs and their pods in memory. A Job gets one pod (`<job>-x7k2p`, the Job's pod
    template, phase Pending); pod changes are events with increasing versions, served to lists
    and to watches (which block until a change or their timeout, and answer 410 Gone from a
    version older than `expire()` left). Its clock runs `speed` times faster than the wall
    clock: a watch of `seconds` ends after `seconds / speed`. `open_watches` counts the watch
    requests being served."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.open_watches = 0
        self.objects: dict[tuple[str, str, str], Any] = {}
        self.pods: dict[tuple[str, str], k8s.V1Pod] = {}
        self.events: list[tuple[int, str, str, k8s.V1Pod]] = []  # version, type, namespace, pod
        self.version = 0
        self.gone_before = 0
        self.failures: list[Exception] = []  # raised by the next pod lists / watches
        self.lists = self.watches = 0
        self.changed = threading.Condition()

    def _create(self, kind: str, namespace: str, body: Any) -> None:
        key = (kind, namespace, body.metadata.name)
        with self.changed:
            if key in self.objects:
                raise k8s.ApiException(status=409, reason="AlreadyExists")
            self.objects[key] = body

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        with self.changed:
            if self.objects.pop((kind, namespace, name), None) is None:
                raise k8s.ApiException(status=404, reason="NotFound")

    def create_secret(self, namespace: str, body: Any) -> None:
        self._create("Secret", namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        self._delete("Secret", namespace, name)

    def create_job(self, namespace: str, body: Any) -> None:
        self._create("Job", namespace, body)
        template = body.spec.template
        labels = {**template.metadata.labels, "job-name": body.metadata.name}
        meta = k8s.V1ObjectMeta(name=f"{body.metadata.name}-x7k2p", labels=labels)
        self.add_pod(namespace, k8s.V1Pod(metadata=meta, spec=template.spec))

    def delete_job(self, namespace: str, name: str) -> None:
        self._delete("Job", namespace, name)
        with self.changed:
            for key, pod in list(self.pods.items()):
                if key[0] == namespace and pod.metadata.labels.get("job-name") == name:
                    del self.pods[key]
                    self._record("DELETED", namespace, pod)

    def _record(self, type_: str, namespace: str, pod: k8s.V1Pod) -> None:
        self.version += 1
        pod.metadata.resource_version = str(self.version)
        self.events.append((self.version, type_, namespace, copy.deepcopy(pod)))
        self.changed.notify_all()

    def add_pod(self, namespace: str, pod: k8s.V1Pod) -> None:
        """A pod of anyone (`create_job` adds the Job's own)."""
        pod.status = pod.status or k8s.V1PodStatus(phase="Pending")
        with self.changed:
            self.pods[(namespace, pod.metadata.name)] = pod
            self._record("ADDED", namespace, pod)

    def set_status(
        self, name: str, status: k8s.V1PodStatus, namespace: str = "flame", silently: bool = False
    ) -> None:
        """Pod `name` (or the pod of Job `name`) gets `status`; `silently`: no watch event."""
        with self.changed:
            key = (
                (namespace, name)
                if (namespace, name) in self.pods
                else (namespace, name + "-x7k2p")
            )
            pod = self.pods[key]
            pod.status = status
            if silently:
                self.version += 1
                pod.metadata.resource_version = str(self.version)
            else:
                self._record("MODIFIED", namespace, pod)

    def expire(self) -> None:
        """Every version up to now is gone: a watch from one of them gets 410."""
        with self.changed:
            self.gone_before = self.version
            self.changed.notify_all()

    def _fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def list_pods(self, namespace: str, selector: str) -> tuple[list[k8s.V1Pod], str]:
        with self.changed:
            self.lists += 1
            self._fail()
            pods = [
                copy.deepcopy(pod)
                for (ns, _), pod in self.pods.items()
                if ns == namespace and _selects(selector, pod.metadata.labels)
            ]
            return pods, str(self.version)

    def watch_pods(
        self, namespace: str, selector: str, version: str, seconds: int
    ) -> Iterator[tuple[str, k8s.V1Pod]]:
        deadline = time.monotonic() + seconds / self.speed
        seen = int(version)
        with self.changed:
            self.watches += 1
            self._fail()
            self.open_watches += 1
        try:
            while True:
                with self.changed:
                    if seen < self.gone_before:
                        raise k8s.ApiException(status=410, reason="Gone")
                    fresh = [e for e in self.events if e[0] > seen]
                    if not fresh:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        self.changed.wait(left)
                        continue
                for number, type_, ns, pod in fresh:
                    seen = number
                    if ns == namespace and _selects(selector, pod.metadata.labels):
                        yield type_, pod
        finally:
            with self.changed:
                self.open_watches -= 1


async def test_deployer_applies_its_pod_template_to_created_pods() -> None:
    cluster = FakeCluster()
    template = parse_pod_template(GPU_TEMPLATE)
    settings = FlameSettings(rabbit_url=BROKER)
    deployer = KubernetesDeployer(
        cluster, settings, namespace="flame", image="flame:dev", template=template
    )
    await deployer.start(SPEC)
    job = as_dict(cluster.objects[("Job", "flame", worker_name(SPEC))])
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "spot"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    secret = as_dict(cluster.objects[("Secret", "flame", worker_name(SPEC))])
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["stringData"] == {"key": "s3cret", "rabbit-url": BROKER}


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
        assert as_dict(cluster.objects[("Secret", "flame", name)])["stringData"] == {
            "key": "key-a",
            "rabbit-url": settings.rabbit_url,
        }
        await publish(settings, requested("j1", ["a"], type_="worker.released"))
        await eventually(lambda: not cluster.objects, what="no cluster objects left")
    assert not tap.of(WorkerFailedEvent)


def test_kubernetes_deployer_needs_an_image(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        deployer_main(["--kind", "kubernetes"])
    assert exit_info.value.code == 2
    assert "--kind kubernetes needs --image" in capsys.readouterr().err


def test_kubernetes_deployer_with_a_bad_pod_template_says_which_field(
    monkeypatch, tmp_path, capsys
) -> None:
    template = tmp_path / "pod.yaml"
    template.write_text("resources:\n  limits: {nvidia.com/gpu: half}\n")
    monkeypatch.setenv("FLAME_K8S_POD_TEMPLATE", str(template))
    with pytest.raises(SystemExit) as exit_info:
        deployer_main(["--kind", "kubernetes", "--image", "flame:dev"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"FLAME_K8S_POD_TEMPLATE {template}: resources.limits: nvidia.com/gpu: 'half'" in err


def test_kubernetes_deployer_without_a_cluster_says_so(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(SystemExit) as exit_info:
        deployer_main(["--kind", "kubernetes", "--image", "flame:dev"])
    assert exit_info.value.code == 2
    assert "no Kubernetes configuration" in capsys.readouterr().err
