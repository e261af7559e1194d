"""The node agent runs pods as local processes, through the real controller-manager and
scheduler: readiness and liveness are probed over HTTP on each pod's own 127.0.0.N,
deletion delivers SIGTERM before the object goes, and no process outlives its pod."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.waiting import wait_for
from tests.integration.localcluster.node_agent_support import (
    alive,
    container_status,
    get_pod,
    get_pods,
    http_server_container,
    is_ready,
    pid_of,
    pod_if,
    records,
)

pytestmark = pytest.mark.cluster

POD_TIMEOUT_SECONDS = 90.0


def apply(cluster: LocalCluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def deployment(namespace: str, record_dir: Path, replicas: int) -> dict[str, Any]:
    container = http_server_container(
        record_dir, READY_AFTER_SECONDS="2", SHUTDOWN_DELAY_SECONDS="0.5"
    )
    container["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 1,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]},
            },
        },
    }


def ready_pods(cluster: LocalCluster, namespace: str, count: int) -> list[dict[str, Any]] | None:
    pods = [p for p in get_pods(cluster, namespace, "app=web") if is_ready(p)]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live if len(live) == count else None


def test_deployment_pods_are_probed_on_their_own_address_and_drain_on_delete(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    apply(kube_cluster, deployment(namespace, tmp_path, replicas=2))
    pods = wait_for(
        "2 Ready pods of deployment web",
        lambda: ready_pods(kube_cluster, namespace, 2),
        timeout=POD_TIMEOUT_SECONDS,
        describe=lambda: json.dumps([p.get("status") for p in get_pods(kube_cluster, namespace)]),
    )

    addresses = [p["status"]["podIP"] for p in pods]
    assert len(set(addresses)) == 2
    for pod, address in zip(pods, addresses, strict=True):
        assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network("127.0.0.0/8")
        assert address != "127.0.0.1"
        assert pod["status"]["podIPs"] == [{"ip": address}]
        assert pod["status"]["hostIP"] == "127.0.0.1"
        seen = records(tmp_path, pod["metadata"]["name"])
        assert {"event": "listening", "address": f"{address}:8080"}.items() <= seen[0].items()
        probes = [
            r for r in seen if r["event"] == "request" and r["user_agent"].startswith("kube-probe")
        ]
        # Readiness really went over HTTP to this pod's own address: refused (503) until
        # the server said it was ready, then 200.
        assert {r["local"] for r in probes} == {f"{address}:8080"}
        readiness = [r["status"] for r in probes if r["path"] == "/readyz"]
        assert readiness[:1] == [503]
        assert 200 in readiness

    pids = [pid_of(p) for p in pods]
    assert all(pid is not None and alive(pid) for pid in pids)

    victim, survivor = pods
    victim_name = victim["metadata"]["name"]
    kube_cluster.kubectl("delete", "pod", victim_name, "-n", namespace, "--wait=false")
    wait_for(
        f"SIGTERM recorded by {victim_name}",
        lambda: [r for r in records(tmp_path, victim_name) if r["event"] == "SIGTERM"],
        timeout=30,
    )
    wait_for(
        f"pod {victim_name} gone",
        lambda: get_pod(kube_cluster, namespace, victim_name) is None,
        timeout=30,
    )
    assert pids[0] is not None
    assert not alive(pids[0])
    # It ended by itself after SIGTERM (its exit record), not by SIGKILL.
    assert [r["event"] for r in records(tmp_path, victim_name)][-2:] == ["SIGTERM", "exit"]

    def replaced() -> list[dict[str, Any]] | None:
        ready = ready_pods(kube_cluster, namespace, 2)
        names = {p["metadata"]["name"] for p in ready or []}
        return ready if ready and victim_name not in names else None

    after = wait_for("a Ready replacement pod", replaced, timeout=POD_TIMEOUT_SECONDS)
    replacement = next(p for p in after if p["metadata"]["name"] != survivor["metadata"]["name"])
    assert replacement["status"]["podIP"] != survivor["status"]["podIP"]
    pids.append(pid_of(replacement))

    kube_cluster.kubectl("scale", "deployment/web", "-n", namespace, "--replicas=0")
    wait_for(
        "no pods left after scaling to 0",
        lambda: get_pods(kube_cluster, namespace, "app=web") == [],
        timeout=60,
    )
    still_running = [pid for pid in pids if pid is not None and alive(pid)]
    assert still_running == []


def test_failing_liveness_probe_restarts_the_container(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    container = http_server_container(tmp_path)
    container["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1}
    apply(
        kube_cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "flaky", "namespace": namespace},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
        },
    )
    pod = wait_for(
        "pod flaky Ready",
        lambda: pod_if(kube_cluster, namespace, "flaky", is_ready),
        timeout=POD_TIMEOUT_SECONDS,
    )
    first_pid = pid_of(pod)
    assert container_status(pod)["restartCount"] == 0

    (tmp_path / "flaky.unhealthy").touch()
    restarted = wait_for(
        "restartCount of flaky to rise",
        lambda: (
            (p := get_pod(kube_cluster, namespace, "flaky"))
            and container_status(p)["restartCount"] >= 1
            and p
        ),
        timeout=60,
    )
    # The agent stopped the unhealthy process with SIGTERM (it recorded it) and reports why.
    assert any(
        r["event"] == "SIGTERM" and r["pid"] == first_pid for r in records(tmp_path, "flaky")
    )
    last = container_status(restarted)["lastState"]["terminated"]
    assert last["message"].startswith("Liveness probe failed")
    assert first_pid is not None
    assert not alive(first_pid)

    (tmp_path / "flaky.unhealthy").unlink()
    healthy = wait_for(
        "flaky Ready again after the restart",
        lambda: pod_if(kube_cluster, namespace, "flaky", is_ready),
        timeout=60,
    )
    assert container_status(healthy)["restartCount"] >= 1
    assert pid_of(healthy) != first_pid
    assert healthy["status"]["podIP"] == pod["status"]["podIP"]
