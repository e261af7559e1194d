"""The Node object and its Lease as the local node agent publishes them (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localcluster.nodeagent.env import NodeAllocatable
from localcluster.nodeagent.ips import HOST_IP
from localcluster.nodeagent.status import format_time

JsonDict = dict[str, Any]

MAX_PODS = 110
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
CONTAINER_RUNTIME_VERSION = "local-process://1.0"

# type -> (status when healthy, reason, message), as the kubelet words them.
HEALTHY_CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status (local node agent)"),
)


@dataclass(frozen=True)
class NodeFacts:
    """What the agent reports about the machine; gathered once at start."""

    name: str
    cpu_count: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    architecture: str
    kernel_version: str
    os_image: str
    machine_id: str
    boot_id: str
    kubelet_version: str
    hostname: str


def allocatable(facts: NodeFacts) -> NodeAllocatable:
    resources = capacity(facts)
    return NodeAllocatable(
        cpu=resources["cpu"],
        memory=resources["memory"],
        ephemeral_storage=resources["ephemeral-storage"],
    )


def capacity(facts: NodeFacts) -> dict[str, str]:
    return {
        "cpu": str(facts.cpu_count),
        "memory": f"{facts.memory_bytes // 1024}Ki",
        "ephemeral-storage": f"{facts.ephemeral_storage_bytes // 1024}Ki",
        "pods": str(MAX_PODS),
    }


def node_conditions(previous: Sequence[Mapping[str, Any]], now: datetime) -> list[JsonDict]:
    by_type = {c.get("type"): c for c in previous}
    conditions = []
    for kind, status, reason, message in HEALTHY_CONDITIONS:
        before = by_type.get(kind) or {}
        transition = (
            before.get("lastTransitionTime")
            if before.get("status") == status and before.get("lastTransitionTime")
            else format_time(now)
        )
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": format_time(now),
                "lastTransitionTime": transition,
            }
        )
    return conditions


def node_status(
    facts: NodeFacts, previous_conditions: Sequence[Mapping[str, Any]], now: datetime
) -> JsonDict:
    resources = capacity(facts)
    return {
        "capacity": resources,
        "allocatable": dict(resources),
        "conditions": node_conditions(previous_conditions, now),
        "addresses": [
            {"type": "InternalIP", "address": HOST_IP},
            {"type": "Hostname", "address": facts.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.machine_id,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
            "kubeletVersion": facts.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
    }


def node_labels(facts: NodeFacts) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": facts.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": facts.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": facts.architecture,
        "workerfleet.dev/local-node-agent": "true",
    }


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_taints(text: str) -> list[JsonDict]:
    """`key[=value]:Effect[,...]`, as the kubelet's --register-with-taints takes them."""
    taints = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_value, _, effect = item.rpartition(":")
        key, _, value = key_value.partition("=")
        if not key or effect not in TAINT_EFFECTS:
            raise ValueError(
                f"taint {item!r}: expected key[=value]:Effect with Effect one of {TAINT_EFFECTS}"
            )
        taints.append({"key": key, "effect": effect, **({"value": value} if value else {})})
    return taints


def node_manifest(
    facts: NodeFacts, now: datetime, taints: Sequence[Mapping[str, Any]] = ()
) -> JsonDict:
    """A Node, Ready from its first moment; untainted unless taints are asked for."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": facts.name, "labels": node_labels(facts)},
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": node_status(facts, [], now),
    }


def format_micro_time(moment: datetime) -> str:
    """metav1.MicroTime, as Lease.spec.renewTime wants it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_manifest(node_name: str, node_uid: str, now: datetime) -> JsonDict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": format_micro_time(now),
        },
    }


def lease_renewal(now: datetime) -> JsonDict:
    return {"spec": {"renewTime": format_micro_time(now)}}


def kube_architecture(machine: str) -> str:
    """platform.machine() in GOARCH spelling."""
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
