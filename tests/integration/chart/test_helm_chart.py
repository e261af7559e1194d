"""The Helm chart: lints, validates its values, and installs into a real apiserver
with RBAC that grants the operator what it uses, and nothing Pod Security
"restricted" would refuse."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from localcluster.control_plane import REPO_ROOT, LocalCluster

CHART = REPO_ROOT / "charts" / "workerfleet"


def helm(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def test_chart_lints_and_its_schema_refuses_bad_values(kube_cluster: LocalCluster) -> None:
    assert "0 chart(s) failed" in helm(kube_cluster, "lint", str(CHART)).stdout
    refused = helm(kube_cluster, "lint", str(CHART), "--set", "operator.logLevel=LOUD", check=False)
    assert refused.returncode != 0
    assert "/operator/logLevel" in refused.stdout + refused.stderr
    typo = helm(kube_cluster, "lint", str(CHART), "--set", "replicaCont=2", check=False)
    assert typo.returncode != 0
    assert "replicaCont" in typo.stdout + typo.stderr


@pytest.fixture
def restricted_namespace(kube_cluster: LocalCluster, namespace: str) -> str:
    kube_cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    return namespace


@pytest.fixture
def release(kube_cluster: LocalCluster, restricted_namespace: str) -> Iterator[str]:
    name = f"wf-{restricted_namespace}"
    # No operator replica: the tests run their own operator, and this install is
    # about what the chart creates and what it is allowed to do.
    helm(
        kube_cluster,
        "install",
        name,
        str(CHART),
        "-n",
        restricted_namespace,
        "--set",
        "replicaCount=0",
        "--wait",
        "--timeout",
        "120s",
    )
    yield name
    helm(kube_cluster, "uninstall", name, "-n", restricted_namespace, check=False)


def test_rendered_manifests_pass_server_validation_and_pod_security(
    kube_cluster: LocalCluster, restricted_namespace: str
) -> None:
    rendered = helm(kube_cluster, "template", "wf", str(CHART), "-n", restricted_namespace).stdout
    applied = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", restricted_namespace, "-f", "-", input=rendered
    )
    assert "deployment.apps/wf-workerfleet created (server dry run)" in applied.stdout
    assert "violate" not in applied.stderr, applied.stderr


def test_installed_release_grants_the_operator_what_it_uses(
    kube_cluster: LocalCluster, restricted_namespace: str, release: str
) -> None:
    account = f"system:serviceaccount:{restricted_namespace}:{release}-workerfleet"
    # The chart's crds/ are the repository's crds/: both CRDs are served.
    crds = json.loads(kube_cluster.kubectl("get", "crd", "-o", "json").stdout)["items"]
    served = {crd["metadata"]["name"] for crd in crds}
    assert {"workerpools.workerfleet.dev", "monitors.workerfleet.dev"} <= served
    allowed = [
        ("list", "workerpools.workerfleet.dev"),
        ("patch", "workerpools.workerfleet.dev/status"),
        ("watch", "monitors.workerfleet.dev"),
        ("create", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "services"),
        ("delete", "pods"),
        ("patch", "pods"),
        ("get", "secrets"),
        ("create", "events"),
    ]
    for verb, resource in allowed:
        result = kube_cluster.kubectl(
            "auth", "can-i", verb, resource, "--as", account, "-n", "default", check=False
        )
        assert result.stdout.strip() == "yes", (verb, resource, result.stdout, result.stderr)
    # Least privilege: nothing beyond what it needs.
    for verb, resource in [
        ("delete", "secrets"),
        ("create", "clusterroles"),
        ("delete", "namespaces"),
        ("create", "pods"),
    ]:
        result = kube_cluster.kubectl("auth", "can-i", verb, resource, "--as", account, check=False)
        assert result.stdout.strip() == "no", (verb, resource)
