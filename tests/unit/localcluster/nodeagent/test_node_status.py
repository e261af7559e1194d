"""The Node and Lease the local node agent publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from localcluster.nodeagent.node_status import (
    NodeFacts,
    allocatable,
    kube_architecture,
    lease_manifest,
    lease_renewal,
    node_conditions,
    node_manifest,
    parse_taints,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
FACTS = NodeFacts(
    name="workerfleet-node",
    cpu_count=2,
    memory_bytes=8 * 1024**3,
    ephemeral_storage_bytes=10 * 1024**3,
    architecture="amd64",
    kernel_version="6.1",
    os_image="Debian",
    machine_id="m",
    boot_id="b",
    kubelet_version="v1.36.3",
    hostname="box",
)


def test_node_is_ready_untainted_with_capacity_and_loopback_address() -> None:
    node = node_manifest(FACTS, T0)
    assert node["metadata"]["name"] == "workerfleet-node"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "workerfleet-node"
    assert "taints" not in node["spec"]
    status = node["status"]
    assert status["capacity"] == {
        "cpu": "2",
        "memory": "8388608Ki",
        "ephemeral-storage": "10485760Ki",
        "pods": "110",
    }
    assert status["allocatable"] == status["capacity"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
    }
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_heartbeat_moves_but_transition_stays() -> None:
    first = node_conditions([], T0)
    later = node_conditions(first, T0 + timedelta(seconds=15))
    for before, after in zip(first, later, strict=True):
        assert after["lastTransitionTime"] == before["lastTransitionTime"]
        assert after["lastHeartbeatTime"] == "2025-01-02T03:04:20Z"
    not_ready_before = [{"type": "Ready", "status": "Unknown", "lastTransitionTime": "x"}]
    ready = next(c for c in node_conditions(not_ready_before, T0) if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2025-01-02T03:04:05Z"


def test_lease_is_owned_by_the_node_and_renewed_in_micro_time() -> None:
    lease = lease_manifest("workerfleet-node", "uid-1", T0)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert lease["spec"]["holderIdentity"] == "workerfleet-node"
    assert lease["spec"]["renewTime"] == "2025-01-02T03:04:05.000000Z"
    assert lease_renewal(T0 + timedelta(microseconds=5)) == {
        "spec": {"renewTime": "2025-01-02T03:04:05.000005Z"}
    }


def test_architecture_names() -> None:
    assert kube_architecture("x86_64") == "amd64"
    assert kube_architecture("aarch64") == "arm64"
    assert kube_architecture("riscv64") == "riscv64"


def test_taints_are_parsed_like_register_with_taints() -> None:
    assert parse_taints("") == []
    assert parse_taints("a=b:NoSchedule, c:NoExecute") == [
        {"key": "a", "value": "b", "effect": "NoSchedule"},
        {"key": "c", "effect": "NoExecute"},
    ]
    assert node_manifest(FACTS, T0, parse_taints("a=b:NoSchedule"))["spec"]["taints"] == [
        {"key": "a", "value": "b", "effect": "NoSchedule"}
    ]
    with pytest.raises(ValueError, match="Effect"):
        parse_taints("a=b:Sometimes")


def test_allocatable_feeds_resource_field_refs() -> None:
    node = allocatable(FACTS)
    assert (node.cpu, node.memory) == ("2", "8388608Ki")
