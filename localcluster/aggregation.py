"""An APIService served by a local process: the aggregation layer without kube-proxy.

The apiserver reaches an extension apiserver (KEDA's metrics adapter, a test's server)
through the Service its APIService names. This cluster has no kube-proxy and no pod
network, but the aggregator resolves an ``ExternalName`` Service itself: to
``localhost`` on the Service's port, where the local process listens. It verifies the
process's serving certificate against the APIService's ``caBundle`` for the name
``<service>.<namespace>.svc``, and presents the front-proxy client certificate
(``pki.FRONT_PROXY_CLIENT``) with the caller's identity in X-Remote-* headers.

The manifests are pure; :func:`register`, :func:`wait_available` and :func:`unregister`
apply them. An APIService left registered after its process stopped makes discovery
incomplete for every client, so whoever registers one unregisters it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcluster.control_plane import LocalCluster
from localcluster.waiting import wait_for

# Where the aggregator connects: the ExternalName Service resolves to this host.
LOCAL_HOST = "localhost"
AVAILABLE_TIMEOUT_SECONDS = 90.0
GROUP_PRIORITY_MINIMUM = 100
VERSION_PRIORITY = 100


@dataclass(frozen=True)
class LocalAPIService:
    """``<version>.<group>`` served on ``localhost:<port>`` behind Service
    ``<namespace>/<service>``, its serving certificate signed by ``ca_bundle`` (PEM)."""

    group: str
    version: str
    service: str
    namespace: str
    port: int
    ca_bundle: bytes

    @property
    def name(self) -> str:
        return f"{self.version}.{self.group}"

    @property
    def path(self) -> str:
        return f"/apis/{self.group}/{self.version}"

    def serving_names(self) -> tuple[str, ...]:
        """The names the serving certificate needs: the aggregator checks the first."""
        service = f"{self.service}.{self.namespace}.svc"
        return (service, f"{service}.cluster.local", LOCAL_HOST)

    def manifests(self) -> list[dict[str, Any]]:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.service, "namespace": self.namespace},
            "spec": {
                "type": "ExternalName",
                "externalName": LOCAL_HOST,
                "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
            },
        }
        api_service = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": self.name},
            "spec": {
                "group": self.group,
                "version": self.version,
                "service": {"name": self.service, "namespace": self.namespace, "port": self.port},
                "caBundle": base64.b64encode(self.ca_bundle).decode(),
                "groupPriorityMinimum": GROUP_PRIORITY_MINIMUM,
                "versionPriority": VERSION_PRIORITY,
            },
        }
        return [service, api_service]


def register(cluster: LocalCluster, api_service: LocalAPIService) -> None:
    """Create (or update) the namespace, the Service and the APIService."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": api_service.namespace},
    }
    items = [namespace, *api_service.manifests()]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def availability(cluster: LocalCluster, name: str) -> tuple[bool, str]:
    """Whether APIService ``name`` is Available, and its condition's reason and message."""
    result = cluster.kubectl("get", "apiservice", name, "-o", "json", check=False)
    if result.returncode != 0:
        return False, result.stderr.strip()
    conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
    for condition in conditions:
        if condition.get("type") == "Available":
            said = f"{condition.get('reason')}: {condition.get('message', '')}".strip()
            return condition.get("status") == "True", said
    return False, "no Available condition yet"


def wait_available(
    cluster: LocalCluster,
    api_service: LocalAPIService,
    still_serving: Callable[[], None] = lambda: None,
    timeout: float = AVAILABLE_TIMEOUT_SECONDS,
) -> None:
    """Until the aggregator reports the APIService Available. ``still_serving`` raises
    AssertionError (with the process's last words) once the serving process has exited,
    which ends the wait at once instead of at the timeout."""
    last = ""

    def available() -> bool:
        nonlocal last
        still_serving()
        ok, last = availability(cluster, api_service.name)
        return ok

    wait_for(
        f"APIService {api_service.name} to become Available",
        available,
        timeout=timeout,
        describe=lambda: last,
    )


def unregister(cluster: LocalCluster, api_service: LocalAPIService) -> None:
    """Delete the APIService and its Service (the namespace stays)."""
    cluster.kubectl("delete", "apiservice", api_service.name, "--ignore-not-found", check=False)
    cluster.kubectl(
        "delete",
        "service",
        api_service.service,
        "-n",
        api_service.namespace,
        "--ignore-not-found",
        check=False,
    )
