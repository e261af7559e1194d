"""The Node object and its heartbeat (effects): registration, the Lease in
kube-node-lease renewed every LEASE_RENEW_INTERVAL_SECONDS, and the Ready condition
re-posted every NODE_STATUS_INTERVAL_SECONDS, well inside the node lifecycle
controller's grace period (40-50s), so the node is never marked NotReady."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcluster.nodeagent import node_status as spec
from localcluster.nodeagent.api import ApiError, KubeApi, with_retries

log = logging.getLogger("node-agent")

LEASE_RENEW_INTERVAL_SECONDS = 10.0
NODE_STATUS_INTERVAL_SECONDS = 15.0
RETRY_SECONDS = 2.0
LEASES_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{spec.LEASE_NAMESPACE}/leases"
FALLBACK_KUBELET_VERSION = "v0.0.0-local"


def _read(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip() or default
    except OSError:
        return default


def _memory_bytes() -> int:
    for line in _read("/proc/meminfo", "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _os_image() -> str:
    for line in _read("/etc/os-release", "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def gather_facts(
    api: KubeApi,
    node_name: str,
    state_dir: Path,
    stop: threading.Event,
    cpu: int | None = None,
    memory_bytes: int | None = None,
) -> spec.NodeFacts:
    """The machine as the Node reports it; cpu and memory_bytes override what the
    machine has (a small CI box can then still schedule a large fleet)."""
    try:
        version = with_retries(lambda: api.get("/version"), "read apiserver version", stop)
        kubelet_version = str(version.get("gitVersion") or FALLBACK_KUBELET_VERSION)
    except ApiError:
        kubelet_version = FALLBACK_KUBELET_VERSION
    machine_id = _read("/etc/machine-id", "") or _read("/var/lib/dbus/machine-id", "local-node")
    return spec.NodeFacts(
        name=node_name,
        cpu_count=cpu or os.cpu_count() or 1,
        memory_bytes=memory_bytes or _memory_bytes(),
        ephemeral_storage_bytes=shutil.disk_usage(state_dir).total,
        architecture=spec.kube_architecture(platform.machine()),
        kernel_version=platform.release(),
        os_image=_os_image(),
        machine_id=machine_id,
        boot_id=_read("/proc/sys/kernel/random/boot_id", "unknown"),
        kubelet_version=kubelet_version,
        hostname=socket.gethostname(),
    )


def _now() -> datetime:
    return datetime.now(UTC)


class NodeHeartbeat(threading.Thread):
    def __init__(
        self,
        api: KubeApi,
        facts: spec.NodeFacts,
        stop: threading.Event,
        taints: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(name="node-heartbeat", daemon=True)
        self._api = api
        self._facts = facts
        self._taints = list(taints)
        self._halt = stop
        self._node_uid = ""
        self._conditions: list[dict[str, Any]] = []

    @property
    def node_path(self) -> str:
        return f"/api/v1/nodes/{self._facts.name}"

    @property
    def lease_path(self) -> str:
        return f"{LEASES_PATH}/{self._facts.name}"

    def register(self) -> None:
        """Creates the Node (or adopts an existing one), posts its status and its Lease."""

        def create_or_adopt() -> dict[str, Any]:
            try:
                return self._api.post(
                    "/api/v1/nodes", spec.node_manifest(self._facts, _now(), self._taints)
                )
            except ApiError as error:
                if error.status != 409:
                    raise
            return self._api.patch(
                self.node_path, {"metadata": {"labels": spec.node_labels(self._facts)}}
            )

        node = with_retries(create_or_adopt, f"register node {self._facts.name}", self._halt)
        self._node_uid = str(node["metadata"]["uid"])
        self._conditions = list((node.get("status") or {}).get("conditions") or [])
        with_retries(self.post_status, "post node status", self._halt)
        try:
            with_retries(self.renew_lease, "renew node lease", self._halt, attempts=3)
        except ApiError as error:
            log.warning("node lease not written yet (%s); the heartbeat retries", error)
        log.info(
            "node %s registered (uid %s, %s cpu, kubelet version %s)",
            self._facts.name,
            self._node_uid,
            self._facts.cpu_count,
            self._facts.kubelet_version,
        )

    def post_status(self) -> None:
        status = spec.node_status(self._facts, self._conditions, _now())
        node = self._api.patch(f"{self.node_path}/status", {"status": status})
        self._conditions = list((node.get("status") or {}).get("conditions") or [])

    def renew_lease(self) -> None:
        try:
            self._api.patch(self.lease_path, spec.lease_renewal(_now()))
        except ApiError as error:
            if error.status != 404:
                raise
            self._api.post(
                LEASES_PATH,
                spec.lease_manifest(self._facts.name, self._node_uid, _now()),
            )

    def run(self) -> None:
        next_lease = time.monotonic() + LEASE_RENEW_INTERVAL_SECONDS
        next_status = time.monotonic() + NODE_STATUS_INTERVAL_SECONDS
        while not self._halt.wait(max(min(next_lease, next_status) - time.monotonic(), 0.0)):
            if time.monotonic() >= next_lease:
                ok = self._beat("lease renewal", self.renew_lease)
                next_lease = time.monotonic() + (
                    LEASE_RENEW_INTERVAL_SECONDS if ok else RETRY_SECONDS
                )
            if time.monotonic() >= next_status:
                ok = self._beat("node status", self.post_status)
                next_status = time.monotonic() + (
                    NODE_STATUS_INTERVAL_SECONDS if ok else RETRY_SECONDS
                )

    def _beat(self, what: str, call: Callable[[], None]) -> bool:
        try:
            call()
            return True
        except ApiError as error:
            log.warning("%s failed (%s); retrying in %gs", what, error, RETRY_SECONDS)
            if error.status == 404 and call == self.post_status:
                log.warning("node %s disappeared: registering again", self._facts.name)
                try:
                    self.register()
                except ApiError as again:
                    log.warning("re-registration failed: %s", again)
        except Exception:
            log.exception("%s failed; retrying in %gs", what, RETRY_SECONDS)
        return False
