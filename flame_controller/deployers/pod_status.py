"""Why a worker pod failed, read from its status: a reason, or None while it is fine."""

from __future__ import annotations

from kubernetes import client as k8s

# Waiting reasons of a container that will not start without someone changing the pod or cluster
IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
START_ERRORS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
MESSAGE_LIMIT = 300  # kubelet and scheduler messages can be long: the reason keeps their start


def _said(message: str | None) -> str:
    """`: <message>` (one line, clipped), or nothing for an empty message."""
    text = " ".join((message or "").split())
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return f": {text}" if text else ""


def _spec_container(pod: k8s.V1Pod, name: str) -> k8s.V1Container | None:
    containers = pod.spec.containers if pod.spec is not None else []
    return next((c for c in containers or [] if c.name == name), None)


def _memory_limit(pod: k8s.V1Pod, name: str) -> str:
    container = _spec_container(pod, name)
    limits = (container.resources.limits if container and container.resources else None) or {}
    return f", memory limit {limits['memory']}" if "memory" in limits else ""


def _image(pod: k8s.V1Pod, status: k8s.V1ContainerStatus) -> str:
    container = _spec_container(pod, status.name)
    return (container.image if container else None) or status.image or "?"


def _container_failure(pod: k8s.V1Pod, status: k8s.V1ContainerStatus) -> str | None:
    state = status.state or k8s.V1ContainerState()
    last = status.last_state.terminated if status.last_state else None
    for ended in (state.terminated, last):
        if ended is not None and ended.reason == "OOMKilled":
            limit = _memory_limit(pod, status.name)
            return f"container {status.name} was OOMKilled (exit code {ended.exit_code}{limit})"
    waiting = state.waiting
    if waiting is not None and waiting.reason in IMAGE_ERRORS:
        image = _image(pod, status)
        return f"cannot pull image {image} ({waiting.reason}){_said(waiting.message)}"
    if waiting is not None and waiting.reason == "CrashLoopBackOff":
        code = f", last exit code {last.exit_code}" if last is not None else ""
        return f"container {status.name} is crash-looping (CrashLoopBackOff{code})"
    if waiting is not None and waiting.reason in START_ERRORS:
        return f"cannot start container {status.name} ({waiting.reason}){_said(waiting.message)}"
    ended = state.terminated
    if ended is not None and ended.exit_code:
        why = f" ({ended.reason})" if ended.reason else ""
        return (
            f"container {status.name} exited with code {ended.exit_code}{why}{_said(ended.message)}"
        )
    return None


def pod_failure(pod: k8s.V1Pod) -> str | None:
    """`pod <name>: <why>` for a pod that failed or cannot start; None for a running, pending
    (scheduled, pulling) or succeeded one. Checked in order: OOMKilled, image pull errors,
    crash loop, container start errors, a non-zero exit, unschedulable, phase Failed."""
    status = pod.status or k8s.V1PodStatus()
    if status.phase == "Succeeded":
        return None
    name = pod.metadata.name if pod.metadata is not None else "?"
    for container in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
        reason = _container_failure(pod, container)
        if reason is not None:
            return f"pod {name}: {reason}"
    for condition in status.conditions or []:
        if (condition.type, condition.status, condition.reason) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return f"pod {name}: cannot be scheduled{_said(condition.message)}"
    if status.phase == "Failed":
        why = f" ({status.reason})" if status.reason else ""
        return f"pod {name}: failed{why}{_said(status.message)}"
    return None
