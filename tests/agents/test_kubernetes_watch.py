"""Kubernetes deployer: it watches its workers' pods and reports each one that fails or cannot
start once, with Kubernetes' reason, then deletes its Job and Secret (over a fake cluster API)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from flame_common.settings import FlameSettings
from flame_controller.app import running_controller
from flame_controller.deployers import pod_watch
from flame_controller.deployers.app import running_deployer
from flame_controller.deployers.base import WorkerSpec
from flame_controller.deployers.kubernetes import (
    WORKER_SELECTOR,
    ClusterApi,
    KubernetesDeployer,
    job_manifest,
    worker_name,
)
from flame_controller.mongo import MongoJobStore
from schemas import commands as c
from schemas.events import WorkerFailedEvent
from schemas.job import JobSpec
from tests.agents.test_kubernetes import FakeCluster
from tests.controller.conftest import Bus, mnist, seed_example
from tests.support.wait import eventually

SPEC = WorkerSpec("65f0c0ffee0123456789abcd", "b" * 40, "s3cret", "http://api:10100")
NAME = worker_name(SPEC)
POD = f"{NAME}-x7k2p"
SPEED = 40.0  # the fake cluster's clock against the wall clock: a 1-second watch takes 25 ms


@pytest.fixture(autouse=True)
def _paced_for_the_fast_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch requests may follow each other as fast as the fake cluster ends them."""
    monkeypatch.setattr(pod_watch, "MIN_GAP", 1.0 / SPEED)


async def _watched_through(cluster: FakeCluster) -> None:
    """Wait until the deployer has sent two more watch requests: each resumes from the last
    version it saw, so every change made before this call has been handed to the deployer."""
    watches = cluster.watches
    await eventually(lambda: cluster.watches >= watches + 2, what="two more watch requests")


def container(
    *,
    waiting: tuple[str, str] | None = None,
    terminated: tuple[int, str] | None = None,
    last: tuple[int, str] | None = None,
    image: str = "flame:dev",
) -> k8s.V1ContainerStatus:
    """The flamelet container's status: waiting (reason, message), terminated (code, reason)."""

    def ended(code_reason: tuple[int, str]) -> k8s.V1ContainerState:
        code, reason = code_reason
        return k8s.V1ContainerState(
            terminated=k8s.V1ContainerStateTerminated(exit_code=code, reason=reason)
        )

    if waiting is not None:
        reason, message = waiting
        state = k8s.V1ContainerState(
            waiting=k8s.V1ContainerStateWaiting(reason=reason, message=message)
        )
    else:
        state = ended(terminated) if terminated else k8s.V1ContainerState()
    return k8s.V1ContainerStatus(
        name="flamelet",
        image=image,
        image_id="",
        ready=False,
        restart_count=0,
        state=state,
        last_state=ended(last) if last else None,
    )


def pod_status(phase: str, *statuses: k8s.V1ContainerStatus, **fields: object) -> k8s.V1PodStatus:
    return k8s.V1PodStatus(phase=phase, container_statuses=list(statuses) or None, **fields)


UNSCHEDULABLE = k8s.V1PodCondition(
    type="PodScheduled",
    status="False",
    reason="Unschedulable",
    message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
)

FAILURES = {
    "image-pull-backoff": (
        pod_status(
            "Pending",
            container(waiting=("ImagePullBackOff", 'Back-off pulling image "flame:dev"')),
        ),
        f"pod {POD}: cannot pull image flame:dev (ImagePullBackOff): "
        'Back-off pulling image "flame:dev"',
    ),
    "err-image-pull": (
        pod_status(
            "Pending",
            container(waiting=("ErrImagePull", "rpc error: code = NotFound\n  manifest unknown")),
        ),
        f"pod {POD}: cannot pull image flame:dev (ErrImagePull): rpc error: code = NotFound "
        "manifest unknown",
    ),
    "unschedulable": (
        pod_status("Pending", conditions=[UNSCHEDULABLE]),
        f"pod {POD}: cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    ),
    "oom-killed": (
        pod_status("Failed", container(terminated=(137, "OOMKilled"))),
        f"pod {POD}: container flamelet was OOMKilled (exit code 137, memory limit 2Gi)",
    ),
    "exited-non-zero": (
        pod_status("Failed", container(terminated=(3, "Error"))),
        f"pod {POD}: container flamelet exited with code 3 (Error)",
    ),
    "crash-loop": (
        pod_status(
            "Running",
            container(waiting=("CrashLoopBackOff", "back-off 5m0s"), last=(1, "Error")),
        ),
        f"pod {POD}: container flamelet is crash-looping (CrashLoopBackOff, last exit code 1)",
    ),
    "evicted": (
        pod_status("Failed", reason="Evicted", message="The node was low on resource: memory."),
        f"pod {POD}: failed (Evicted): The node was low on resource: memory.",
    ),
}


@dataclass
class Watched:
    cluster: FakeCluster
    deployer: KubernetesDeployer
    reports: list[tuple[str, str, str]] = field(default_factory=list)

    async def report(self, job_id: str, task_id: str, reason: str) -> None:
        self.reports.append((job_id, task_id, reason))


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    """A deployer over a fake cluster watching its pods (1-second watch requests, on the fast
    clock), reports collected; its worker SPEC started."""
    cluster = FakeCluster(speed=SPEED)
    settings = FlameSettings()
    deployer = KubernetesDeployer(
        cluster, settings, namespace="flame", image="flame:dev", watch_seconds=1, retry_first=0.05
    )
    w = Watched(cluster, deployer)
    deployer.on_failure = w.report
    await deployer.open()
    await deployer.start(SPEC)
    try:
        yield w
    finally:
        await deployer.close()


@pytest.mark.parametrize("case", FAILURES)
async def test_a_failed_pod_is_reported_once_and_cleaned_up(watched: Watched, case: str) -> None:
    status, reason = FAILURES[case]
    watched.cluster.set_status(NAME, status)
    await eventually(lambda: watched.reports, what="a worker.failed report")
    assert watched.reports == [(SPEC.job_id, SPEC.task_id, reason)]
    await eventually(lambda: not watched.cluster.objects, what="Job and Secret deleted")
    assert not watched.cluster.pods  # the Job's pod went with it (a DELETED event, still failed)
    await _watched_through(watched.cluster)
    assert len(watched.reports) == 1


async def test_succeeded_released_and_foreign_pods_are_not_reported(watched: Watched) -> None:
    cluster = watched.cluster
    oom = pod_status("Failed", container(terminated=(137, "OOMKilled")))
    foreign = KubernetesDeployer(cluster, FlameSettings(), namespace="flame", image="flame:dev")
    other = WorkerSpec("0ther0ther0ther0ther0the", "c" * 40, "k", "http://api")
    await foreign.start(other)  # same labels and namespace: another deployer's worker
    cluster.set_status(worker_name(other), oom)
    elsewhere = job_manifest(SPEC, image="flame:dev", settings=FlameSettings())
    cluster.create_job("other-namespace", elsewhere)  # this worker's labels, another namespace
    cluster.set_status(NAME, oom, namespace="other-namespace")
    not_flame = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="web-1", labels={"app": "web"}))
    cluster.add_pod("flame", not_flame)
    cluster.set_status("web-1", oom)
    done = pod_status("Succeeded", container(terminated=(0, "Completed")))
    cluster.set_status(NAME, done)  # a worker that ended well
    second = WorkerSpec(SPEC.job_id, "d" * 40, "k", "http://api")
    await watched.deployer.start(second)
    await watched.deployer.stop(second.job_id, [second.task_id])  # released...
    labels = job_manifest(second, image="x", settings=FlameSettings()).spec.template.metadata.labels
    late = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="late", labels=labels), status=oom)
    cluster.add_pod("flame", late)  # ...then a pod of it fails: no report
    await _watched_through(cluster)
    assert watched.reports == []
    assert ("Job", "flame", NAME) in cluster.objects  # nothing deleted either


async def test_a_failure_before_open_is_found_by_the_first_list() -> None:
    cluster = FakeCluster()
    deployer = KubernetesDeployer(cluster, FlameSettings(), namespace="flame", image="flame:dev")
    reports: list[str] = []

    async def report(job_id: str, task_id: str, reason: str) -> None:
        reports.append(reason)

    deployer.on_failure = report
    await deployer.start(SPEC)
    status, reason = FAILURES["unschedulable"]
    cluster.set_status(NAME, status)
    await deployer.open()
    try:
        await eventually(lambda: reports == [reason], what="the listed failure reported")
        assert cluster.lists == 1
    finally:
        await deployer.close()


async def test_a_missed_change_is_found_by_listing_again_after_410(watched: Watched) -> None:
    cluster = watched.cluster
    await eventually(lambda: cluster.watches >= 1, what="a watch request")
    status, reason = FAILURES["oom-killed"]
    cluster.set_status(NAME, status, silently=True)  # its event is lost
    await _watched_through(cluster)
    assert watched.reports == []  # a watch alone never sees it
    cluster.expire()  # the watch's version is gone: 410, list again
    await eventually(lambda: watched.reports, what="the failure found by the new list")
    assert watched.reports == [(SPEC.job_id, SPEC.task_id, reason)]
    assert cluster.lists == 2


async def test_the_watch_resumes_after_its_timeout_and_after_errors(watched: Watched) -> None:
    cluster = watched.cluster
    await eventually(lambda: cluster.watches >= 2, what="a watch resumed after its timeout")
    assert cluster.lists == 1  # resumed from its version, not listed again
    cluster.failures = [
        k8s.ApiException(status=403, reason="Forbidden"),  # the watch (Role without watch)
        k8s.ApiException(status=500, reason="Internal Server Error"),  # the next list
    ]
    await eventually(lambda: not cluster.failures, what="both failures raised")
    status, reason = FAILURES["image-pull-backoff"]
    cluster.set_status(NAME, status)
    await eventually(lambda: watched.reports, what="a report after the retries")
    assert watched.reports == [(SPEC.job_id, SPEC.task_id, reason)]
    assert cluster.lists == 3


async def test_close_stops_watching_within_a_watch_timeout() -> None:
    cluster = FakeCluster()  # on the wall clock: close does not wait for the watch to end
    deployer = KubernetesDeployer(
        cluster, FlameSettings(), namespace="flame", image="flame:dev", watch_seconds=1
    )
    await deployer.open()
    await eventually(lambda: cluster.watches >= 1, what="a watch request")
    await asyncio.wait_for(deployer.close(), 0.5)
    watches = cluster.watches
    await eventually(lambda: cluster.open_watches == 0, what="the open watch ended")
    assert cluster.watches == watches  # and no new request followed (its loop has ended)


async def test_stop_alone_ends_the_watch_loop_at_once() -> None:
    """A cancellation of `run` can be lost (Python 3.11's wait_for drops one that meets a
    result): `stop` ends it by itself, in the middle of a long watch request."""
    cluster = FakeCluster()
    seen: list[k8s.V1Pod] = []

    async def on_pod(pod: k8s.V1Pod) -> None:
        seen.append(pod)

    watcher = pod_watch.PodWatcher(cluster, "flame", WORKER_SELECTOR, on_pod, watch_seconds=30)
    run = asyncio.create_task(watcher.run())
    await eventually(lambda: cluster.open_watches == 1, what="a watch request")
    watcher.stop()
    await asyncio.wait_for(run, 1)
    assert cluster.watches == 1


@pytest.mark.integration
async def test_a_pod_stuck_pulling_its_image_fails_its_task_through_the_controller(
    settings: FlameSettings, db: object
) -> None:
    """Real broker, database and controller: the aggregator's pod (compute `default`) cannot
    pull its image; its task fails with Kubernetes' reason, and so the job."""
    await seed_example(mnist())
    cluster = FakeCluster()
    deployer = KubernetesDeployer(
        cluster, settings, namespace="flame", image="flame:nope", watch_seconds=1
    )
    bus = Bus(settings)
    await bus.start()
    try:
        async with (
            running_controller(settings),
            running_deployer(settings, register=False, deployer=deployer),
        ):
            spec = JobSpec.model_validate(mnist().spec)
            created = (await bus.call(c.CreateJob(user_id="alice", spec=spec))).unwrap()
            assert isinstance(created, dict)
            job_id = str(created["id"])
            await bus.call(c.StartJob(user_id="alice", job_id=job_id))
            jobs = await eventually(
                lambda: [k[2] for k in cluster.objects if k[0] == "Job"], what="the worker's Job"
            )
            (name,) = jobs
            message = 'Back-off pulling image "flame:nope"'
            backoff = pod_status("Pending", container(waiting=("ImagePullBackOff", message)))
            cluster.set_status(name, backoff)
            records = MongoJobStore(settings.stop_grace_seconds)

            async def failed() -> str:
                job = await records.job(job_id)
                return job.reason if job is not None and job.state == "failed" else ""

            reason = await eventually(failed, timeout=20, what="the job failed")
            pulled = f"pod {name}-x7k2p: cannot pull image flame:nope (ImagePullBackOff): {message}"
            tasks = {t.role: t for t in await records.tasks(job_id)}
            assert tasks["aggregator"].state == "failed"
            assert tasks["aggregator"].log == f"worker failed: {pulled}"  # the task's reason
            assert reason.startswith("all tasks of role aggregator failed")
            failures = [e for e in bus.seen.of(WorkerFailedEvent) if e.job_id == job_id]
            assert [e.payload.reason for e in failures] == [pulled]  # sent once
            await eventually(lambda: not cluster.objects, what="Job and Secret deleted")
    finally:
        await bus.stop()


class _PodServer(ThreadingHTTPServer):
    """The pods endpoint of a cluster API: a list, or a watch stream of `lines` (JSON events)."""

    lines: list[dict[str, object]]
    queries: list[dict[str, list[str]]]


class _PodHandler(BaseHTTPRequestHandler):
    server: _PodServer

    def do_GET(self) -> None:  # the http.server hook
        url = urlsplit(self.path)
        assert url.path == "/api/v1/namespaces/flame/pods", url.path
        query = parse_qs(url.query)
        self.server.queries.append(query)
        pod = {"metadata": {"name": "p", "resourceVersion": "7", "labels": {"a": "b"}}}
        if query.get("watch") == ["true"]:
            body = "".join(json.dumps(line) + "\n" for line in self.server.lines)
        else:
            body = json.dumps({"metadata": {"resourceVersion": "5"}, "items": [pod]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_cluster_api_lists_and_watches_pods_over_http() -> None:
    """`ClusterApi`'s pod reads with the official client against a stand-in API server: the
    selector, version and timeout are sent, events come back as pods, 410 as ApiException."""
    server = _PodServer(("127.0.0.1", 0), _PodHandler)
    server.queries = []
    pod = {"metadata": {"name": "p", "resourceVersion": "8"}, "status": {"phase": "Failed"}}
    server.lines = [
        {"type": "MODIFIED", "object": pod},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
    ]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        config = k8s.Configuration(host=f"http://127.0.0.1:{server.server_port}")
        api = ClusterApi(k8s.ApiClient(config))
        pods, version = api.list_pods("flame", WORKER_SELECTOR)
        assert version == "5" and [p.metadata.name for p in pods] == ["p"]
        assert server.queries[-1]["labelSelector"] == [WORKER_SELECTOR]
        events = list(api.watch_pods("flame", WORKER_SELECTOR, "5", 3))
        assert [(t, p.metadata.name, p.status.phase) for t, p in events] == [
            ("MODIFIED", "p", "Failed")
        ]
        query = server.queries[-1]
        assert (query["resourceVersion"], query["timeoutSeconds"]) == (["5"], ["3"])
        gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
        server.lines = [{"type": "ERROR", "object": gone}]
        with pytest.raises(k8s.ApiException) as error:
            list(api.watch_pods("flame", WORKER_SELECTOR, "1", 3))
        assert error.value.status == 410
    finally:
        server.shutdown()
        server.server_close()
