"""The README's "Install with Helm" section, run as written on the local cluster: the
operator runs as pods of the chart (two replicas, one acting) in a namespace held to Pod
Security "restricted", a WorkerPool's jobs drain, every metric the alert rules and the
dashboard read is exported by a live worker or the operator, an upgrade with a changed
value rolls the operator, `helm test` passes, and `helm uninstall` leaves only the CRDs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.waiting import wait_for
from tests.chart_support import (
    OPERATOR_PORT,
    PROMETHEUS_MADE,
    alerts,
    dashboard,
    dashboard_expressions,
    exported_names,
    http_get,
    lease_holder,
    metric_names,
    operator_pods,
    readme_blocks,
    ready,
    roles,
    rule_groups,
    sampled_names,
    samples_with,
)
from tests.operator_support import pods, queue_stats

pytestmark = pytest.mark.cluster

# The names the README uses.
RELEASE = "workerfleet"
NAMESPACE = "workerfleet"
POOL_NAMESPACE = "mail"
POOL = "demo"
QUEUE = "demo"
JOBS = 100
BLOCK_TIMEOUT_SECONDS = 600
DRAIN_TIMEOUT_SECONDS = 240
# The gauges the operator sets for every pool it syncs (operator/metrics.py, record_pool).
POOL_GAUGES = frozenset(
    {
        "workerfleet_operator_pool_condition",
        "workerfleet_operator_queue_jobs",
        "workerfleet_operator_queue_oldest_pending_seconds",
        "workerfleet_operator_pool_desired_replicas",
        "workerfleet_operator_pool_ready_replicas",
        "workerfleet_operator_pool_max_replicas",
    }
)
# Objects every namespace has, which the release did not make.
NAMESPACE_DEFAULTS = {"serviceaccount/default", "configmap/kube-root-ca.crt"}


def example_pool() -> dict[str, Any]:
    """The WorkerPool the README's pool block applies."""
    pool: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "workerpool.yaml").read_text())
    return pool


def run_block(name: str, env: dict[str, str]) -> str:
    """One README block through bash, as a reader would paste it."""
    script = readme_blocks()[name]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, (
        f"README block {name!r} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def remove_leftovers(cluster: LocalCluster, env: dict[str, str]) -> None:
    """What an earlier, interrupted run may have left."""
    helm = cluster.bin_dir / "helm"
    subprocess.run(
        [str(helm), "uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    cluster.kubectl(
        "delete", "namespace", POOL_NAMESPACE, NAMESPACE, "--ignore-not-found", timeout=300
    )


@pytest.fixture
def shell_env(crds: LocalCluster, postgres_dsn: str) -> Iterator[dict[str, str]]:
    """The reader's shell: kubectl and helm of the cluster's release, the project's console
    scripts, the cluster's kubeconfig, a database and an image name (not pulled here)."""
    path = os.pathsep.join(
        [str(crds.bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    env = {
        **os.environ,
        "PATH": path,
        "KUBECONFIG": str(crds.kubeconfig),
        "DSN": postgres_dsn,
        "IMAGE_REPOSITORY": "workerfleet",
        "IMAGE_TAG": "0.1.0",
    }
    remove_leftovers(crds, env)
    try:
        yield env
    finally:
        remove_leftovers(crds, env)


def listed(cluster: LocalCluster, kinds: str, *args: str) -> set[str]:
    output = cluster.kubectl("get", kinds, *args, "-o", "name").stdout
    return {line.strip() for line in output.splitlines() if line.strip()}


def acting_pair(cluster: LocalCluster) -> dict[str, str | None] | None:
    """Pod -> role once both replicas are ready and exactly one acts."""
    found = operator_pods(cluster, NAMESPACE, RELEASE)
    if len(found) != 2 or not all(ready(pod) for pod in found):
        return None
    by_pod = roles(found)
    return by_pod if sorted(map(str, by_pod.values())) == ["leader", "standby"] else None


def scrape(pod: dict[str, Any], port: int) -> str:
    status, body = http_get(f"http://{pod['status']['podIP']}:{port}/metrics")
    assert status == 200
    return body


def test_the_readmes_install_section(shell_env: dict[str, str], crds: LocalCluster) -> None:
    cluster = crds
    run_block("install", shell_env)
    labels = json.loads(cluster.kubectl("get", "namespace", NAMESPACE, "-o", "json").stdout)
    assert labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    first = wait_for("one operator acting, one standing by", lambda: acting_pair(cluster))
    leader = next(pod for pod, role in first.items() if role == "leader")
    assert lease_holder(cluster, NAMESPACE, RELEASE) == leader

    run_block("pool", shell_env)
    dsn = shell_env["DSN"]

    def drained() -> bool:
        stats = queue_stats(dsn, QUEUE)
        return stats is not None and stats.pending + stats.scheduled + stats.running == 0

    wait_for(
        f"the {JOBS} jobs of queue {QUEUE} drained by the chart's operator",
        drained,
        timeout=DRAIN_TIMEOUT_SECONDS,
        describe=lambda: str(queue_stats(dsn, QUEUE)),
    )
    stats = queue_stats(dsn, QUEUE)
    assert stats is not None
    assert stats.succeeded == JOBS
    workers = pods(cluster, POOL_NAMESPACE, POOL)
    assert workers
    for worker in workers:
        spec = worker["spec"]
        assert spec["serviceAccountName"] == f"{POOL}-worker"
        assert spec["automountServiceAccountToken"] is False
        assert not [v for v in spec.get("volumes", []) if "projected" in v]

    # Every metric name the rules and the dashboard read is exported by a live process.
    operator = next(
        p for p in operator_pods(cluster, NAMESPACE, RELEASE) if p["metadata"]["name"] == leader
    )
    worker = wait_for(
        "a ready worker",
        lambda: next((w for w in pods(cluster, POOL_NAMESPACE, POOL) if ready(w)), None),
        describe=lambda: json.dumps([w.get("status") for w in pods(cluster, POOL_NAMESPACE, POOL)]),
    )
    worker_page = scrape(worker, 8080)
    operator_page = scrape(operator, OPERATOR_PORT)
    exported = exported_names(worker_page) | exported_names(operator_page)
    used = set().union(
        *(metric_names(expr) for expr in alerts(rule_groups()).values()),
        *(metric_names(expr) for expr in dashboard_expressions(dashboard())),
    )
    print(f"metrics used by rules and dashboard: {len(used)}; exported: {len(exported)}")
    assert used - PROMETHEUS_MADE - exported == set()
    # A labelled series exists only once something set it: an incident firing, a job
    # failing on the worker scraped. Its family's HELP/TYPE lines prove the name is
    # exported; the pool's own gauges are set on every status tick, so they need samples.
    sampled = sampled_names(worker_page) | sampled_names(operator_page)
    print(f"exported, no sample yet: {sorted(used - PROMETHEUS_MADE - sampled)}")
    pool_samples = samples_with(operator_page, {"namespace": POOL_NAMESPACE, "pool": POOL})
    assert POOL_GAUGES - set(pool_samples) == set()
    (max_replicas,) = pool_samples["workerfleet_operator_pool_max_replicas"]
    assert max_replicas == example_pool()["spec"]["replicas"]["max"]
    assert "workerfleet_operator_leader 1.0" in operator_page

    run_block("upgrade", shell_env)
    second = wait_for(
        "the upgraded pair: one acting, one standing by", lambda: acting_pair(cluster)
    )
    assert set(second).isdisjoint(first), "the upgrade did not replace the operator pods"
    (container,) = json.loads(
        cluster.kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    )["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WORKERFLEET_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert lease_holder(cluster, NAMESPACE, RELEASE) in second

    run_block("uninstall", shell_env)
    release_label = f"app.kubernetes.io/instance={RELEASE}"
    wait_for(
        "nothing of the release left in its namespace",
        lambda: (
            listed(
                cluster,
                "all,serviceaccounts,roles,rolebindings,leases,configmaps,secrets,poddisruptionbudgets",
                "-n",
                NAMESPACE,
            )
            <= NAMESPACE_DEFAULTS
        ),
        timeout=120,
    )
    assert listed(cluster, "clusterroles,clusterrolebindings", "-l", release_label) == set()
    assert {"customresourcedefinition.apiextensions.k8s.io/workerpools.workerfleet.dev"} <= (
        listed(cluster, "crds")
    )
    run_block("namespace", shell_env)
