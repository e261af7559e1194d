"""The Helm chart against a real apiserver: it lints, its schema refuses bad values, what
it renders passes server validation and Pod Security "restricted", and the accounts it
creates can do what the operator needs and nothing more: a `kubectl auth can-i` matrix of
what the operator's and the workers' accounts must and must not be allowed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from localcluster.control_plane import LocalCluster
from tests.chart_support import CHART, helm

pytestmark = pytest.mark.cluster

Check = tuple[str, str, str | None]
"""(verb, resource, namespace); None asks across all namespaces. The resource may name
one object (`leases.coordination.k8s.io/NAME`) or a subresource (`pods[exec]`)."""


def run_helm(cluster: LocalCluster, *args: str) -> str:
    result = helm(*args, kubeconfig=cluster.kubeconfig)
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def test_chart_lints_and_its_schema_refuses_bad_values() -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART)).stdout
    refused = helm("lint", str(CHART), "--set", "operator.logLevel=LOUD")
    assert refused.returncode != 0
    assert "/operator/logLevel" in refused.stdout + refused.stderr
    typo = helm("lint", str(CHART), "--set", "replicaCont=2")
    assert typo.returncode != 0
    assert "replicaCont" in typo.stdout + typo.stderr
    threshold = helm(
        "lint", str(CHART), "--set", "prometheusRule.alerts.jobFailureRate.threshold=2"
    )
    assert threshold.returncode != 0
    assert "threshold" in threshold.stdout + threshold.stderr


def restrict(cluster: LocalCluster, namespace: str) -> str:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    return namespace


@pytest.fixture
def other_namespace(kube_cluster: LocalCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def install(cluster: LocalCluster, namespace: str, *values: str) -> str:
    """A release with no operator replica: the RBAC it creates is what is under test."""
    name = f"wf-{namespace}"
    sets = [part for value in ("replicaCount=0", *values) for part in ("--set", value)]
    run_helm(cluster, "install", name, str(CHART), "-n", namespace, *sets, "--wait")
    return name


def can(cluster: LocalCluster, account: str, groups: tuple[str, ...], check: Check) -> bool:
    verb, resource, namespace = check
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    as_groups = [f"--as-group={group}" for group in groups]
    resource, _, subresource = resource.rstrip("]").partition("[")
    sub = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, *sub, f"--as={account}", *as_groups, *scope, check=False
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def service_account(namespace: str, name: str) -> tuple[str, tuple[str, ...]]:
    """The user and groups the API server gives a service account's token."""
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    return f"system:serviceaccount:{namespace}:{name}", groups


def verdicts(
    cluster: LocalCluster, who: tuple[str, tuple[str, ...]], checks: list[Check]
) -> dict[Check, bool]:
    return {check: can(cluster, who[0], who[1], check) for check in checks}


def operator_must(namespace: str) -> list[Check]:
    """What the operator does in a namespace it serves."""
    return [
        ("watch", "workerpools.workerfleet.dev", namespace),
        ("patch", "workerpools.workerfleet.dev", namespace),
        ("patch", "workerpools.workerfleet.dev[status]", namespace),
        ("list", "monitors.workerfleet.dev", namespace),
        ("patch", "monitors.workerfleet.dev[status]", namespace),
        ("create", "deployments.apps", namespace),
        ("patch", "deployments.apps", namespace),
        ("watch", "deployments.apps", namespace),
        ("create", "services", namespace),
        ("delete", "services", namespace),
        ("create", "serviceaccounts", namespace),
        ("patch", "serviceaccounts", namespace),
        ("watch", "pods", namespace),
        ("patch", "pods", namespace),
        ("delete", "pods", namespace),
        ("get", "secrets", namespace),
        ("create", "events", namespace),
        ("create", "events.events.k8s.io", namespace),
    ]


def operator_must_not(namespace: str | None) -> list[Check]:
    """What the operator never does: list Secrets, make pods or tokens, grant rights."""
    return [
        ("list", "secrets", namespace),
        ("watch", "secrets", namespace),
        ("create", "secrets", namespace),
        ("delete", "secrets", namespace),
        ("create", "pods", namespace),
        ("create", "pods[exec]", namespace),
        ("create", "serviceaccounts[token]", namespace),
        ("delete", "deployments.apps", namespace),
        ("create", "roles.rbac.authorization.k8s.io", namespace),
        ("create", "rolebindings.rbac.authorization.k8s.io", namespace),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
        ("bind", "clusterroles.rbac.authorization.k8s.io", None),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
        ("impersonate", "users", None),
        ("delete", "namespaces", None),
        ("patch", "nodes", None),
        ("update", "leases.coordination.k8s.io", "kube-system"),
    ]


def test_rendered_manifests_pass_server_validation_and_pod_security(
    kube_cluster: LocalCluster, namespace: str
) -> None:
    restrict(kube_cluster, namespace)
    for values in ([], ["--set", "replicaCount=2", "--set", "watchNamespaces={a,b}"]):
        rendered = run_helm(kube_cluster, "template", "wf", str(CHART), "-n", namespace, *values)
        applied = kube_cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
        )
        # The dry run of Roles in namespaces a and b fails (they do not exist): the rest is
        # what is checked here.
        assert "deployment.apps/wf-workerfleet created (server dry run)" in applied.stdout
        assert "violate" not in applied.stderr, applied.stderr


def test_the_operator_may_do_what_it_needs_and_nothing_more(
    kube_cluster: LocalCluster, namespace: str
) -> None:
    release = install(kube_cluster, restrict(kube_cluster, namespace))
    crds = json.loads(kube_cluster.kubectl("get", "crd", "-o", "json").stdout)["items"]
    assert {"workerpools.workerfleet.dev", "monitors.workerfleet.dev"} <= {
        crd["metadata"]["name"] for crd in crds
    }
    operator = service_account(namespace, f"{release}-workerfleet")
    must = [
        *operator_must("default"),
        *operator_must(namespace),
        ("list", "workerpools.workerfleet.dev", None),
        ("get", "leases.coordination.k8s.io/" + f"{release}-workerfleet", namespace),
        ("update", "leases.coordination.k8s.io/" + f"{release}-workerfleet", namespace),
        ("create", "leases.coordination.k8s.io", namespace),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
    ]
    must_not = [
        *operator_must_not(None),
        *operator_must_not(namespace),
        ("update", "leases.coordination.k8s.io/someone-else", namespace),
        ("create", "leases.coordination.k8s.io", "default"),
    ]
    allowed = verdicts(kube_cluster, operator, must)
    assert [check for check, yes in allowed.items() if not yes] == []
    refused = verdicts(kube_cluster, operator, must_not)
    assert [check for check, yes in refused.items() if yes] == []
    run_helm(kube_cluster, "uninstall", release, "-n", namespace)


def test_scoped_to_watch_namespaces_the_operator_cannot_touch_the_others(
    kube_cluster: LocalCluster, namespace: str, other_namespace: str
) -> None:
    served = other_namespace
    release = install(kube_cluster, namespace, f"watchNamespaces={{{served}}}")
    operator = service_account(namespace, f"{release}-workerfleet")
    allowed = verdicts(kube_cluster, operator, operator_must(served))
    assert [check for check, yes in allowed.items() if not yes] == []
    elsewhere = [
        *operator_must("default"),
        ("list", "workerpools.workerfleet.dev", None),
        ("list", "namespaces", None),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("get", "secrets", None),
        ("list", "pods", None),
        *operator_must_not(served),
    ]
    refused = verdicts(kube_cluster, operator, elsewhere)
    assert [check for check, yes in refused.items() if yes] == []
    run_helm(kube_cluster, "uninstall", release, "-n", namespace)


def test_workers_accounts_have_no_api_access(kube_cluster: LocalCluster, namespace: str) -> None:
    """A pool's `<pool>-worker` account is bound to nothing: it may do exactly what an
    account nobody granted anything may do (discovery, asking about itself)."""
    release = install(kube_cluster, namespace)
    worker = service_account(namespace, "emails-worker")
    nobody = service_account(namespace, f"nobody-{uuid.uuid4().hex[:6]}")

    def listing(who: tuple[str, tuple[str, ...]]) -> list[str]:
        groups = [f"--as-group={group}" for group in who[1]]
        result = kube_cluster.kubectl(
            "auth", "can-i", "--list", f"--as={who[0]}", *groups, "-n", namespace
        )
        return sorted(result.stdout.splitlines()[1:])

    assert listing(worker) == listing(nobody)
    checks: list[Check] = [
        ("get", "secrets", namespace),
        ("list", "pods", namespace),
        ("get", "workerpools.workerfleet.dev", namespace),
        ("create", "pods", namespace),
        ("get", "configmaps", namespace),
        ("list", "secrets", None),
    ]
    refused = verdicts(kube_cluster, worker, checks)
    assert [check for check, yes in refused.items() if yes] == []
    run_helm(kube_cluster, "uninstall", release, "-n", namespace)
