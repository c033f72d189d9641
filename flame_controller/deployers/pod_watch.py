"""Follow the pods of a label selector: list, then watch from that version, list again on 410."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from kubernetes import client as k8s

from flame_common.logs import get_logger

log = get_logger(__name__)

WATCH_SECONDS = 30  # one watch request's server-side timeout; then it is resumed from its version
LIST_TIMEOUT = 30.0  # the longest a pod list may take before it counts as failed
RETRY_FIRST = 1.0  # a failed list or watch is retried after this, doubling up to RETRY_MAX
RETRY_MAX = 30.0
SLACK = 10.0  # beyond a watch's timeout, how long its stream may stay silent before it is dropped
MIN_GAP = 1.0  # watch requests start at least this far apart (a server ending them at once)


class PodApi(Protocol):
    """The pod reads of the watcher (`ClusterApi`, or a fake in tests)."""

    def list_pods(self, namespace: str, selector: str) -> tuple[list[k8s.V1Pod], str]:
        """The pods of `selector` and the list's resourceVersion."""
        ...

    def watch_pods(
        self, namespace: str, selector: str, version: str, seconds: int
    ) -> Iterator[tuple[str, k8s.V1Pod]]:
        """(event type, pod) after `version`, for at most `seconds`; ApiException 410 when
        `version` is too old."""
        ...


OnPod = Callable[[k8s.V1Pod], Awaitable[None]]


class WatchEnded(Exception):
    """The watch stream went silent beyond its own timeout."""


class PodWatcher:
    """Hands every pod of `selector` in `namespace` to `on_pod`: each listed pod, then each one a
    watch event carries, in order. Runs until cancelled; never gives up on the cluster."""

    def __init__(
        self,
        api: PodApi,
        namespace: str,
        selector: str,
        on_pod: OnPod,
        *,
        watch_seconds: int = WATCH_SECONDS,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.on_pod = on_pod
        self.watch_seconds = watch_seconds
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._stop = threading.Event()
        self._events: asyncio.Queue[tuple[str, Any]] | None = None  # of the current watch

    def stop(self) -> None:
        """End `run` (call it on the loop's thread): the current watch request returns at once,
        its stream thread at its next event or the watch's timeout, and no request follows.
        Cancelling `run` alone is not enough: a cancellation can be lost (Python 3.11's
        `wait_for` drops one that meets a result)."""
        self._stop.set()
        if self._events is not None:
            self._events.put_nowait(("end", None))

    async def run(self) -> None:
        delay = self.retry_first
        while not self._stop.is_set():
            try:
                version = await self._list()
                delay = self.retry_first
                while not self._stop.is_set():
                    began = time.monotonic()
                    version = await self._watch(version)
                    await asyncio.sleep(max(0.0, began + MIN_GAP - time.monotonic()))
                return  # stopped
            except k8s.ApiException as exc:
                if exc.status == 410:  # the version is gone: list again, from now
                    log.info("pod watch expired; listing again", namespace=self.namespace)
                    await asyncio.sleep(MIN_GAP)
                    continue
                log.warning("pod watch failed", error=_api_error(exc), retry_in=delay)
            except Exception as exc:  # the cluster is unreachable, a stream broke, ...
                log.warning("pod watch failed", error=str(exc) or repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _list(self) -> str:
        call = asyncio.to_thread(self.api.list_pods, self.namespace, self.selector)
        pods, version = await asyncio.wait_for(call, LIST_TIMEOUT)
        for pod in pods:
            await self.on_pod(pod)
        return version

    async def _watch(self, version: str) -> str:
        """One watch request from `version`; returns the last version it saw."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._events = queue

        def put(kind: str, item: Any) -> None:
            if not self._stop.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        def stream() -> None:  # the client blocks: a daemon thread, so it never holds up exit
            try:
                events = self.api.watch_pods(
                    self.namespace, self.selector, version, self.watch_seconds
                )
                for event in events:
                    if self._stop.is_set():
                        break
                    put("event", event)
                put("end", None)
            except BaseException as exc:  # handed to the loop, which raises it
                put("error", exc)

        threading.Thread(target=stream, name="flame-pod-watch", daemon=True).start()
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), self.watch_seconds + SLACK)
            except TimeoutError:
                silent = self.watch_seconds + SLACK
                raise WatchEnded(f"no word from the pod watch in {silent:g} s") from None
            if kind == "end":
                return version
            if kind == "error":
                raise item
            _, pod = item
            version = (pod.metadata and pod.metadata.resource_version) or version
            await self.on_pod(pod)


def _api_error(exc: k8s.ApiException) -> str:
    if exc.status == 403:
        return (
            f"forbidden ({exc.reason}): the deployer's Role needs pods list and watch "
            "(deploy/kubernetes/20-rbac.yaml)"
        )
    return f"{exc.status} {exc.reason}"
