"""What the cluster did during a benchmark run, watched: the Deployment's spec.replicas
and every pod's readiness and restarts over time (monotonic seconds). The watch is the
same for every system, since every system's workers are the same pods of one
Deployment named like the pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as kube_client
from kubernetes import watch as kube_watch

WATCH_WINDOW_SECONDS = 5


@dataclass
class PodSeen:
    created: float
    readiness: list[tuple[float, bool]] = field(default_factory=list)
    """Each change of the Ready condition."""
    restarts: int = 0
    gone: float | None = None

    @property
    def first_ready(self) -> float | None:
        return next((at for at, ready in self.readiness if ready), None)

    def ready_at(self, at: float) -> bool:
        if self.gone is not None and self.gone <= at:
            return False
        state = False
        for changed, ready in self.readiness:
            if changed > at:
                break
            state = ready
        return state


@dataclass
class Watched:
    """The Deployment's replicas and the pods' readiness over time."""

    replicas: list[tuple[float, int]] = field(default_factory=list)
    pods: dict[str, PodSeen] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_deployment(self, at: float, body: dict[str, Any]) -> None:
        replicas = int((body.get("spec") or {}).get("replicas") or 0)
        with self.lock:
            if not self.replicas or self.replicas[-1][1] != replicas:
                self.replicas.append((at, replicas))

    def on_pod(self, at: float, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        name = str(meta.get("name"))
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        restarts = sum(
            int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []
        )
        with self.lock:
            seen = self.pods.setdefault(name, PodSeen(created=at))
            if (not seen.readiness and ready) or (
                seen.readiness and seen.readiness[-1][1] != ready
            ):
                seen.readiness.append((at, ready))
            seen.restarts = max(seen.restarts, restarts)
            if (kind == "DELETED" or meta.get("deletionTimestamp")) and seen.gone is None:
                seen.gone = at

    # -- questions ----------------------------------------------------------------------------

    def replicas_now(self) -> int | None:
        with self.lock:
            return self.replicas[-1][1] if self.replicas else None

    def replicas_at(self, at: float) -> int:
        with self.lock:
            value = 0
            for changed, replicas in self.replicas:
                if changed > at:
                    break
                value = replicas
            return value

    def replicas_between(self, start: float, end: float) -> list[int]:
        """Every value spec.replicas had in [start, end]."""
        with self.lock:
            values = [n for at, n in self.replicas if start < at <= end]
        return [self.replicas_at(start), *values]

    def ready_at(self, at: float) -> int:
        with self.lock:
            return sum(1 for pod in self.pods.values() if pod.ready_at(at))

    def ready_between(self, start: float, end: float) -> list[int]:
        """The Ready pod count at start and after every readiness change in [start, end]."""
        with self.lock:
            moments = {
                at for pod in self.pods.values() for at, _ in pod.readiness if start < at <= end
            } | {pod.gone for pod in self.pods.values() if pod.gone and start < pod.gone <= end}
        return [self.ready_at(at) for at in sorted({start, *moments})]

    def restarts(self) -> int:
        with self.lock:
            return sum(pod.restarts for pod in self.pods.values())

    def pod_seconds(self, start: float, end: float) -> float:
        """spec.replicas integrated over [start, end]: what the pool cost."""
        with self.lock:
            changes = [(at, n) for at, n in self.replicas if start < at < end]
        total, at, value = 0.0, start, self.replicas_at(start)
        for changed, replicas in changes:
            total += value * (changed - at)
            at, value = changed, replicas
        return total + value * (end - at)

    def first_ready_times(self) -> list[float]:
        with self.lock:
            return [
                ready - pod.created
                for pod in self.pods.values()
                if (ready := pod.first_ready) is not None
            ]


class Watcher:
    """Watches one Deployment and its pods (by label selector) from threads until stopped."""

    def __init__(
        self, api: Any, namespace: str, deployment: str, pod_selector: str, watched: Watched
    ) -> None:
        self.apps = kube_client.AppsV1Api(api)
        self.core = kube_client.CoreV1Api(api)
        self.namespace = namespace
        self.deployment = deployment
        self.pod_selector = pod_selector
        self.watched = watched
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._deployments, daemon=True),
            threading.Thread(target=self._pods, daemon=True),
        ]

    def __enter__(self) -> Watcher:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=WATCH_WINDOW_SECONDS * 2)

    def _loop(
        self, list_call: Callable[..., Any], on_event: Callable[[str, Any], None], **kw: Any
    ) -> None:
        version = None
        while not self.stop.is_set():
            try:
                stream = kube_watch.Watch().stream(  # type: ignore[no-untyped-call]
                    list_call,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=WATCH_WINDOW_SECONDS,
                    _preload_content=True,
                    **kw,
                )
                for event in stream:
                    on_event(event["type"], event["raw_object"])
                    version = event["raw_object"]["metadata"]["resourceVersion"]
                    if self.stop.is_set():
                        break
            except kube_client.ApiException as error:
                if error.status != 410:
                    raise
                version = None  # expired: list again

    def _deployments(self) -> None:
        self._loop(
            self.apps.list_namespaced_deployment,
            lambda _kind, body: self.watched.on_deployment(time.monotonic(), body),
            field_selector=f"metadata.name={self.deployment}",
        )

    def _pods(self) -> None:
        self._loop(
            self.core.list_namespaced_pod,
            lambda kind, body: self.watched.on_pod(time.monotonic(), kind, body),
            label_selector=self.pod_selector,
        )
