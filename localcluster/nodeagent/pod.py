"""One pod on the local node (effects): address, containers, status, deletion.

A PodWorker thread owns the pod from the first time the agent sees it until its object is
gone: it gives the pod its loopback address, runs init containers one after another and
then the containers, patches the pod status whenever it changes, and on deletion stops
the processes (SIGTERM, grace period, SIGKILL) before it lets the object go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcluster.nodeagent import restart
from localcluster.nodeagent.api import MERGE_PATCH, ApiError, KubeApi, with_retries
from localcluster.nodeagent.container import ContainerRunner, PodContext
from localcluster.nodeagent.env import NodeAllocatable
from localcluster.nodeagent.ips import HOST_IP, AddressAllocator
from localcluster.nodeagent.process_groups import ProcessRegistry, terminate_groups
from localcluster.nodeagent.status import (
    TERMINAL_PHASES,
    PodView,
    Waiting,
    build_pod_status,
    parse_time,
    status_patch,
)

log = logging.getLogger("node-agent")

JsonDict = dict[str, Any]

# Status is rebuilt at least this often even without news (probe flips notify at once).
STATUS_RESYNC_SECONDS = 5.0
DEFAULT_TERMINATION_GRACE_SECONDS = 30.0
# Beyond the grace period, how long to wait for runner threads to record the exit.
RUNNER_JOIN_SLACK_SECONDS = 10.0
DELETE_ATTEMPTS = 20


@dataclass
class AgentServices:
    """What the agent lends every pod worker."""

    api: KubeApi
    registry: ProcessRegistry
    addresses: AddressAllocator
    addresses_lock: threading.Lock
    log_dir: Path
    base_env: Mapping[str, str]
    stop: threading.Event
    on_done: Callable[[str], None]
    node: NodeAllocatable = field(default_factory=NodeAllocatable)


def termination_grace_seconds(pod: Mapping[str, Any]) -> float:
    """The grace period of a deletion: the one the deleter asked for, else the pod's."""
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionGracePeriodSeconds") is not None:
        return float(metadata["deletionGracePeriodSeconds"])
    spec_grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return float(spec_grace) if spec_grace is not None else DEFAULT_TERMINATION_GRACE_SECONDS


def pod_key(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _now() -> datetime:
    return datetime.now(UTC)


class PodWorker(threading.Thread):
    def __init__(self, pod: JsonDict, services: AgentServices) -> None:
        super().__init__(name=f"pod {pod_key(pod)}", daemon=True)
        self.uid = str(pod["metadata"]["uid"])
        self._services = services
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._changed.set()  # the first pass starts the containers at once
        self._pod = pod
        self._gone = False
        self._init_runners: list[ContainerRunner] = []
        self._runners: list[ContainerRunner] = []
        self._pod_ip = ""
        self._start_time = _now()
        self._last_sent: JsonDict | None = None
        self._address_released = False

    # -- fed by the watcher ----------------------------------------------------------------

    def set_pod(self, pod: JsonDict) -> None:
        with self._lock:
            self._pod = pod
        self._changed.set()

    def pod_gone(self) -> None:
        """The object was removed without us (force deletion): stop the processes."""
        with self._lock:
            self._gone = True
        self._changed.set()

    def latest(self) -> JsonDict:
        with self._lock:
            return self._pod

    def poke(self) -> None:
        self._changed.set()

    # -- the worker loop ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s: worker failed; stopping its processes", self.name)
            self._stop_containers(DEFAULT_TERMINATION_GRACE_SECONDS)
            self._release_address()
            self._services.on_done(self.uid)

    def _run(self) -> None:
        pod = self.latest()
        status = pod.get("status") or {}
        terminal = status.get("phase") in TERMINAL_PHASES
        if not terminal:
            self._pod_ip = self._acquire_address(pod)
            self._move_address(pod)
            if status.get("startTime"):
                self._start_time = parse_time(status["startTime"])
            self._create_runners(pod)
            log.info("pod %s accepted: ip %s", pod_key(pod), self._pod_ip)
        while True:
            self._changed.wait(STATUS_RESYNC_SECONDS)
            self._changed.clear()
            if self._services.stop.is_set():
                return  # the agent stops every process itself, and leaves pods as they are
            pod = self.latest()
            with self._lock:
                gone = self._gone
            if gone or (pod.get("metadata") or {}).get("deletionTimestamp"):
                self._finish(pod, gone)
                return
            if terminal:
                continue
            self._advance_containers()
            terminal = self._publish(pod) in TERMINAL_PHASES
            if terminal:
                self._release_address()

    def _acquire_address(self, pod: Mapping[str, Any]) -> str:
        spec = pod.get("spec") or {}
        if spec.get("hostNetwork"):
            return HOST_IP
        published = (pod.get("status") or {}).get("podIP")
        with self._services.addresses_lock:
            if published and self._services.addresses.adopt(self.uid, published):
                return str(published)
            return self._services.addresses.allocate(self.uid)

    def _move_address(self, pod: JsonDict) -> None:
        """A pod resumed after an agent restart may have lost its address to another
        local cluster: publish the new one (a merge patch, as a strategic merge would
        add to podIPs rather than replace it)."""
        published = (pod.get("status") or {}).get("podIP")
        if not published or published == self._pod_ip:
            return
        log.warning(
            "pod %s: address %s is taken; moving to %s", pod_key(pod), published, self._pod_ip
        )
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/status"
        body = {"status": {"podIP": self._pod_ip, "podIPs": [{"ip": self._pod_ip}]}}
        try:
            with_retries(
                lambda: self._services.api.patch(path, body, MERGE_PATCH),
                f"move address of {pod_key(pod)}",
                self._services.stop,
                attempts=5,
            )
        except ApiError as error:
            log.error("pod %s: could not publish its new address: %s", pod_key(pod), error)

    def _release_address(self) -> None:
        if self._address_released:
            return
        self._address_released = True
        with self._services.addresses_lock:
            self._services.addresses.release(self.uid)

    def _create_runners(self, pod: JsonDict) -> None:
        spec = pod.get("spec") or {}
        metadata = pod["metadata"]
        context = PodContext(
            namespace=metadata["namespace"],
            pod_name=metadata["name"],
            pod_uid=self.uid,
            pod_ip=self._pod_ip,
            host_ip=HOST_IP,
            restart_policy=spec.get("restartPolicy") or "Always",
            termination_grace_seconds=float(
                spec.get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_SECONDS)
            ),
            log_dir=self._services.log_dir,
            base_env=self._services.base_env,
            node=self._services.node,
        )
        status = pod.get("status") or {}
        now = _now()
        previous_init = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
        previous = {s.get("name"): s for s in status.get("containerStatuses") or []}
        has_init = bool(spec.get("initContainers"))

        def runner(
            container: JsonDict, prior: Mapping[str, Any] | None, init: bool
        ) -> ContainerRunner:
            resume = restart.resume_from_status(
                prior,
                context.restart_policy,
                now,
                init_container=init,
                initial_state=Waiting("PodInitializing") if has_init and not init else None,
            )
            return ContainerRunner(
                container,
                context,
                pod_source=self.latest,
                notify=self.poke,
                api=self._services.api,
                registry=self._services.registry,
                resume=resume,
                init_container=init,
            )

        self._init_runners = [
            runner(c, previous_init.get(c.get("name")), True)
            for c in spec.get("initContainers") or []
        ]
        self._runners = [
            runner(c, previous.get(c.get("name")), False) for c in spec.get("containers") or []
        ]

    def _advance_containers(self) -> None:
        """Starts the next init container once the previous one succeeded, and the
        containers once every init container did."""
        for init in self._init_runners:
            if init.succeeded():
                continue
            if not init.is_alive() and init.ident is None:
                init.start()
            return
        for container in self._runners:
            if container.ident is None:
                container.start()

    def _view(self, terminating: bool = False) -> PodView:
        return PodView(
            pod_ip=self._pod_ip,
            host_ip=HOST_IP,
            start_time=self._start_time,
            now=_now(),
            init_containers=tuple(r.snapshot() for r in self._init_runners),
            terminating=terminating,
        )

    def _publish(self, pod: JsonDict, terminating: bool = False) -> str:
        """Patches the status if it changed; returns the phase."""
        previous_conditions = (
            self._last_sent["conditions"]
            if self._last_sent
            else (pod.get("status") or {}).get("conditions") or []
        )
        status = build_pod_status(
            pod, [r.snapshot() for r in self._runners], self._view(terminating), previous_conditions
        )
        if status == self._last_sent:
            return str(status["phase"])
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/status"
        try:
            self._services.api.patch(path, status_patch(status))
        except ApiError as error:
            if error.status == 404:
                self.pod_gone()
            elif error.retryable:
                log.warning("pod %s: status patch failed (%s); will retry", pod_key(pod), error)
                self._changed.set()
                self._services.stop.wait(1.0)
            else:
                log.error("pod %s: status refused: %s %s", pod_key(pod), error, error.body)
                self._last_sent = status
            return str((pod.get("status") or {}).get("phase") or "Pending")
        if (self._last_sent or {}).get("phase") != status["phase"]:
            log.info("pod %s: phase %s", pod_key(pod), status["phase"])
        self._last_sent = status
        return str(status["phase"])

    # -- deletion ------------------------------------------------------------------------------

    def _stop_containers(self, grace_seconds: float) -> None:
        processes = [
            process
            for runner in [*self._init_runners, *self._runners]
            if (process := runner.request_stop()) is not None
        ]
        if processes:
            log.info(
                "%s: SIGTERM to %d process group(s), %gs grace",
                self.name,
                len(processes),
                grace_seconds,
            )
        terminate_groups(processes, grace_seconds)
        for runner in [*self._init_runners, *self._runners]:
            if runner.ident is not None:
                runner.join(RUNNER_JOIN_SLACK_SECONDS)

    def _finish(self, pod: JsonDict, gone: bool) -> None:
        grace = termination_grace_seconds(pod)
        log.info(
            "pod %s: %s; stopping containers (grace %gs)",
            pod_key(pod),
            "removed from the API" if gone else "deleted",
            grace,
        )
        self._stop_containers(grace)
        if not gone:
            if self._runners and self._last_sent is not None:
                self._publish(pod, terminating=True)
            self._delete_object(pod)
        self._release_address()
        self._services.on_done(self.uid)

    def _delete_object(self, pod: JsonDict) -> None:
        """Lets the object go, as the kubelet does once the containers have stopped."""
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            with_retries(
                lambda: self._services.api.delete(path, body),
                f"delete pod {pod_key(pod)}",
                self._services.stop,
                attempts=DELETE_ATTEMPTS,
            )
        except ApiError as error:
            if error.status not in (404, 409):
                log.error("pod %s: could not delete the object: %s", pod_key(pod), error)
                return
        log.info("pod %s: containers stopped, object deleted", pod_key(pod))
