"""The worker pod template of the Kubernetes deployer (`FLAME_K8S_POD_TEMPLATE`), validated."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes import client as k8s
from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_REQUESTS = {"cpu": "250m", "memory": "500Mi"}
DEFAULT_LIMITS = {"memory": "2Gi"}
# resources Kubernetes itself accounts in fractions; any other (nvidia.com/gpu, ...) is an
# extended resource: whole numbers, and a request equal to its limit
NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "hugepages-")


class PodTemplateError(ValueError):
    """The pod template is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _quantity(name: str, value: Any) -> tuple[str, Decimal]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name}: {value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)")
    text = str(value)
    try:
        return text, parse_quantity(text)
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)"
        ) from None


def _native(name: str) -> bool:
    return name.startswith(NATIVE_RESOURCES) or name in NATIVE_RESOURCES


class Resources(_Strict):
    """The flamelet container's requests and limits (`nvidia.com/gpu: 1` for a GPU)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, values: Any) -> dict[str, str]:
        if not isinstance(values, dict):
            raise ValueError(f"a mapping of resource names to quantities, not {values!r}")
        return {str(name): _quantity(str(name), value)[0] for name, value in values.items()}

    @model_validator(mode="after")
    def _consistent(self) -> Resources:
        for name in {*self.requests, *self.limits}:
            request, limit = self.requests.get(name), self.limits.get(name)
            if not _native(name):
                for value in (request, limit):
                    if value is not None and parse_quantity(value) % 1:
                        raise ValueError(f"{name}: {value!r} is not a whole number")
                if request is not None and limit is not None and request != limit:
                    raise ValueError(
                        f"{name}: an extended resource's request ({request}) must equal its "
                        f"limit ({limit}); give the limit only"
                    )
                if request is not None and limit is None:
                    raise ValueError(f"{name}: an extended resource needs a limit")
            elif (
                request is not None
                and limit is not None
                and parse_quantity(request) > parse_quantity(limit)
            ):
                raise ValueError(f"{name}: request {request} is above limit {limit}")
        return self


class Toleration(_Strict):
    """A pod toleration, as in the Kubernetes API."""

    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds", ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


class PodTemplate(_Strict):
    """What a cluster admin sets on every worker pod; unset fields keep the defaults."""

    resources: Resources = Resources(requests=DEFAULT_REQUESTS, limits=DEFAULT_LIMITS)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[Toleration] = Field(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list, alias="imagePullSecrets")

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _secret_names(cls, values: Any) -> Any:
        """`[regcred]` or, as in a pod spec, `[{name: regcred}]`."""
        if isinstance(values, list):
            return [v["name"] if isinstance(v, dict) and set(v) == {"name"} else v for v in values]
        return values

    def container_resources(self) -> k8s.V1ResourceRequirements:
        return k8s.V1ResourceRequirements(
            requests=dict(self.resources.requests) or None,
            limits=dict(self.resources.limits) or None,
        )

    def pod_fields(self) -> dict[str, Any]:
        """Keyword arguments of `V1PodSpec` (fields left empty are omitted)."""
        return {
            "node_selector": dict(self.node_selector) or None,
            "tolerations": [
                k8s.V1Toleration(
                    key=t.key or None,
                    operator=t.operator,
                    value=t.value or None,
                    effect=t.effect or None,
                    toleration_seconds=t.toleration_seconds,
                )
                for t in self.tolerations
            ]
            or None,
            "image_pull_secrets": [
                k8s.V1LocalObjectReference(name=name) for name in self.image_pull_secrets
            ]
            or None,
        }


def parse_pod_template(data: Any, *, source: str = "the pod template") -> PodTemplate:
    """`data` (a mapping, e.g. loaded from YAML) as a PodTemplate; PodTemplateError naming every
    wrong field."""
    if not isinstance(data, dict):
        raise PodTemplateError(f"{source}: a mapping of pod template fields, not {data!r}")
    try:
        return PodTemplate.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = (
                    "unknown field (known: resources, nodeSelector, tolerations, imagePullSecrets)"
                )
            problems.append(f"{where}: {message}")
        raise PodTemplateError(f"{source}: " + "; ".join(problems)) from None


def load_pod_template(path: str) -> PodTemplate:
    """The template in the YAML or JSON file `path` (empty: the defaults)."""
    if not path:
        return PodTemplate()
    source = f"FLAME_K8S_POD_TEMPLATE {path}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PodTemplateError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PodTemplateError(f"{source}: not YAML or JSON: {exc}") from None
    return parse_pod_template({} if data is None else data, source=source)
