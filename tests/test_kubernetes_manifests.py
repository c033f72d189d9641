"""deploy/kubernetes: every manifest validates offline (strict), secrets come from Secrets, the
deployer's RBAC is exactly what its cluster client calls, and the pieces name each other right."""

from __future__ import annotations

import contextlib
import functools
import json
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s

from flame_common.settings import FlameSettings
from flame_controller.deployers.kubernetes import ClusterApi
from flame_controller.deployers.pod_template import parse_pod_template

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
K8S_VERSIONS = ("1.30", "1.33")
NAMESPACE = "flame"
SECRET_NAMES = ("URL", "SECRET", "TOKEN", "PASSWORD")  # env names whose values are credentials


@functools.cache
def _parsed(text: str) -> str:
    """The YAML documents of `text` as JSON, parsed once per text."""
    return json.dumps([doc for doc in yaml.safe_load_all(text) if doc is not None])


def _docs(path: Path) -> list[dict[str, Any]]:
    """The documents of `path`: a fresh copy each time (tests may change it)."""
    docs: list[dict[str, Any]] = json.loads(_parsed(path.read_text()))
    return docs


def _files(examples: bool = True) -> list[Path]:
    files = sorted(MANIFESTS.glob("*.yaml"))
    return [*files, *sorted((MANIFESTS / "examples").glob("*.yaml"))] if examples else files


def _applied() -> list[dict[str, Any]]:
    """What `kubectl apply -f deploy/kubernetes/` applies (not examples/)."""
    return [doc for path in _files(examples=False) for doc in _docs(path)]


def _of(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _applied() if d["kind"] == kind}


def _containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, c)
        for name, d in _of("Deployment").items()
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def validate_file(path: Path, version: str) -> None:
    """Every document of `path` against the Kubernetes `version` schemas (no unknown field);
    ValueError naming the file and the document."""
    for i, doc in enumerate(_docs(path)):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise ValueError(f"{path.name} #{i} ({doc.get('kind')}): {exc}") from None


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_shipped_manifest_is_valid(path: Path, version: str) -> None:
    validate_file(path, version)


def test_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    docs = _docs(MANIFESTS / "30-apiserver.yaml")
    docs[0]["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"] = "flame"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(ValueError, match=r"broken.yaml #0 \(Deployment\)"):
        validate_file(broken, K8S_VERSIONS[0])
    docs = _docs(MANIFESTS / "20-rbac.yaml")
    docs[2]["rules"][0]["verb"] = docs[2]["rules"][0].pop("verbs")  # a misspelt field
    broken.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(ValueError, match="Role"):
        validate_file(broken, K8S_VERSIONS[0])


def test_everything_lives_in_the_flame_namespace() -> None:
    (namespace,) = _of("Namespace")
    assert namespace == NAMESPACE
    for doc in _applied():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_credentials_come_from_the_secret_never_from_plain_values() -> None:
    (secret,) = _docs(MANIFESTS / "examples" / "secret.yaml")
    keys = set(secret["stringData"])
    used = set()
    for name, container in _containers():
        for env in container.get("env", []):
            if any(word in env["name"] for word in SECRET_NAMES):
                assert "value" not in env, f"{name}: {env['name']} is a plain value"
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"], f"{name}: {ref}"
                assert ref["key"] in keys, f"{name}: {env['name']} names no key of the Secret"
                used.add(ref["key"])
    assert used == keys, f"keys of the example Secret nothing reads: {keys - used}"
    assert not _of("Secret"), "a Secret with values is applied by `kubectl apply -f`"
    for name, config in _of("ConfigMap").items():
        for key, value in config["data"].items():
            assert "@" not in value, f"ConfigMap {name}: {key} holds credentials"


def test_settings_are_ones_flame_understands(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {f"FLAME_{name.upper()}" for name in FlameSettings.model_fields}
    config = _of("ConfigMap")["flame-config"]["data"]
    names = set(config)
    for _, container in _containers():
        assert container["envFrom"] == [{"configMapRef": {"name": "flame-config"}}]
        names |= {env["name"] for env in container.get("env", [])}
    assert names <= fields, f"unknown settings: {names - fields}"
    with monkeypatch.context() as env:
        for key, value in config.items():
            env.setenv(key, value)
        settings = FlameSettings()  # parses the values as the services will
    assert settings.apiserver_url.endswith(".svc:10100")
    assert settings.job_brokers and settings.job_brokers[0]["sort"] == "rabbitmq"


def test_deployments_run_declared_scripts_with_probes_unprivileged() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    deployments = _of("Deployment")
    assert set(deployments) == {
        f"flame-{s}" for s in ("apiserver", "controller", "notifier", "deployer")
    }
    images = set()
    for name, container in _containers():
        assert container["command"][0] in scripts, f"{name} runs {container['command'][0]}"
        assert container.get("readinessProbe"), f"{name} has no readiness probe"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        images.add(container["image"])
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    command = deployments["flame-deployer"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert images == {command[command.index("--image") + 1]}, "workers run another image"
    assert command[command.index("--kind") + 1] == "kubernetes"
    assert command[command.index("--k8s-namespace") + 1] == NAMESPACE


def test_services_select_their_deployment_and_ports() -> None:
    deployments = _of("Deployment")
    for name, service in _of("Service").items():
        pod = deployments[name]["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert deployments[name]["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: no container port {port['targetPort']}"


class _Recorder:
    """Stands in for BatchV1Api/CoreV1Api: records (group, resource, verb) per call."""

    def __init__(self, group: str, calls: set[tuple[str, str, str]]) -> None:
        self.group, self.calls = group, calls

    def __getattr__(self, method: str) -> Any:
        verb, _, kind = method.partition("_namespaced_")

        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.add((self.group, f"{kind}s", "watch" if kwargs.get("watch") else verb))

        return call


def test_deployer_role_grants_exactly_what_its_client_calls() -> None:
    calls: set[tuple[str, str, str]] = set()
    api = ClusterApi(k8s.ApiClient())
    api._batch = _Recorder("batch", calls)  # type: ignore[assignment]
    api._core = _Recorder("", calls)  # type: ignore[assignment]
    body: Any = None
    api.create_secret(NAMESPACE, body)
    api.delete_secret(NAMESPACE, "x")
    api.create_job(NAMESPACE, body)
    api.delete_job(NAMESPACE, "x")
    for read in (  # the recorder answers nothing: each call is recorded, then fails on that
        lambda: api.list_pods(NAMESPACE, "a=b"),
        lambda: list(api.watch_pods(NAMESPACE, "a=b", "1", 1)),
    ):
        with contextlib.suppress(Exception):
            read()
    role = _of("Role")["flame-deployer"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == calls
    pods = {verb for _, resource, verb in granted if resource == "pods"}
    assert pods == {"list", "watch"}  # read only: jobs' pods are removed by the GC
    (binding,) = _of("RoleBinding").values()
    assert binding["roleRef"]["name"] == "flame-deployer"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flame-deployer", "namespace": NAMESPACE}
    ]
    accounts = _of("ServiceAccount")
    for name, deployment in _of("Deployment").items():
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert account in accounts
        if name != "flame-deployer":  # no cluster API token for the others
            assert accounts[account].get("automountServiceAccountToken") is False, name


def test_deployer_reads_the_shipped_pod_template() -> None:
    config = _of("ConfigMap")["flame-config"]["data"]
    path = Path(config["FLAME_K8S_POD_TEMPLATE"])
    deployment = _of("Deployment")["flame-deployer"]["spec"]["template"]["spec"]
    (mount,) = [
        m for m in deployment["containers"][0]["volumeMounts"] if m["name"] == "pod-template"
    ]
    assert mount["mountPath"] == str(path.parent)
    (volume,) = [v for v in deployment["volumes"] if v["name"] == "pod-template"]
    template = _of("ConfigMap")[volume["configMap"]["name"]]["data"][path.name]
    parse_pod_template(yaml.safe_load(template))  # raises PodTemplateError when invalid
