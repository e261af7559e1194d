"""What the chart renders for the values that change its shape: replicas and leader
election, watchNamespaces, the ServiceMonitors and the helm test hook."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart_support import CHART, helm, of_kind, render


def env_of(documents: list[Any]) -> dict[str, Any]:
    (deployment,) = of_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def rules_of(documents: list[Any]) -> list[dict[str, Any]]:
    return [
        rule for doc in documents if doc["kind"] in ("Role", "ClusterRole") for rule in doc["rules"]
    ]


def test_replicas_stand_by_behind_a_lease_with_a_disruption_budget() -> None:
    documents = render("replicaCount=2")
    (deployment,) = of_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    env = env_of(documents)
    assert env["WORKERFLEET_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["WORKERFLEET_OPERATOR_LEASE_NAME"] == "wf-workerfleet"
    assert env["WORKERFLEET_OPERATOR_LEASE_NAMESPACE"] == "workerfleet"
    assert env["WORKERFLEET_OPERATOR_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["WORKERFLEET_OPERATOR_HEALTH_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    (budget,) = of_kind(documents, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert of_kind(render("replicaCount=1"), "PodDisruptionBudget") == []


def test_without_leader_election_one_replica_is_replaced_not_rolled() -> None:
    documents = render("leaderElection.enabled=false")
    (deployment,) = of_kind(documents, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert env_of(documents)["WORKERFLEET_OPERATOR_LEADER_ELECTION"] == "false"
    assert not [doc for doc in documents if doc["metadata"]["name"].endswith("-leader")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["replicaCount=2", "leaderElection.enabled=false"], "every replica would act"),
        (["leaderElection.renewDeadlineSeconds=9"], "leaseDurationSeconds > renewDeadline"),
        (["leaderElection.retryPeriodSeconds=5"], "renewDeadlineSeconds > retryPeriodSeconds"),
    ],
)
def test_values_that_would_let_two_operators_act_are_refused(
    values: list[str], message: str
) -> None:
    sets = [part for value in values for part in ("--set", value)]
    result = helm("template", "wf", str(CHART), *sets)
    assert result.returncode != 0
    assert message in result.stderr


def test_all_namespaces_one_cluster_role_and_secrets_are_only_read() -> None:
    documents = render()
    cluster_roles = {doc["metadata"]["name"] for doc in of_kind(documents, "ClusterRole")}
    assert cluster_roles == {"wf-workerfleet", "wf-workerfleet-crds"}
    (secrets,) = [r for r in rules_of(documents) if "secrets" in r["resources"]]
    assert secrets["verbs"] == ["get"]
    assert all(
        "pods" not in r["resources"] or "create" not in r["verbs"] for r in rules_of(documents)
    )


def test_watch_namespaces_grant_a_role_in_each_and_nothing_namespaced_cluster_wide() -> None:
    documents = render("watchNamespaces={team-a,team-b}")
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(documents, "Role")
    }
    assert {("team-a", "wf-workerfleet"), ("team-b", "wf-workerfleet")} <= roles
    assert ("workerfleet", "wf-workerfleet-leader") in roles
    bindings = of_kind(documents, "RoleBinding")
    assert {b["metadata"]["namespace"] for b in bindings} >= {"team-a", "team-b"}
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == "workerfleet"
    assert of_kind(documents, "ClusterRole") == []
    assert of_kind(documents, "ClusterRoleBinding") == []
    assert env_of(documents)["WORKERFLEET_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_the_lease_role_names_only_the_releases_lease() -> None:
    documents = render()
    (leader,) = [d for d in of_kind(documents, "Role") if d["metadata"]["name"].endswith("-leader")]
    assert leader["metadata"]["namespace"] == "workerfleet"
    named = [r for r in leader["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["wf-workerfleet"],
            "verbs": ["get", "update"],
        }
    ]


def test_service_monitors_for_the_operator_and_the_workers() -> None:
    documents = render(
        "metrics.serviceMonitor.enabled=true", "metrics.workers.serviceMonitor.enabled=true"
    )
    monitors = {doc["metadata"]["name"]: doc for doc in of_kind(documents, "ServiceMonitor")}
    assert monitors["wf-workerfleet"]["spec"]["endpoints"][0]["honorLabels"] is True
    workers = monitors["wf-workerfleet-workers"]["spec"]
    assert workers["namespaceSelector"] == {"any": True}
    assert workers["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "workerfleet-worker",
        "app.kubernetes.io/component": "metrics",
    }
    assert workers["jobLabel"] == "app.kubernetes.io/name"
    assert workers["endpoints"][0]["port"] == "metrics"
    scoped = render("metrics.workers.serviceMonitor.enabled=true", "watchNamespaces={team-a}")
    (monitor,) = of_kind(scoped, "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_the_helm_test_pod_checks_the_operator_with_an_account_that_only_lists_pods() -> None:
    documents = render()
    (pod,) = of_kind(documents, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][:2] == ["workerfleet-operator", "check"]
    assert (
        "--selector=app.kubernetes.io/name=workerfleet,app.kubernetes.io/instance=wf"
        in (pod["spec"]["containers"][0]["command"])
    )
    (role,) = [
        d for d in of_kind(documents, "Role") if d["metadata"]["name"] == "wf-workerfleet-test"
    ]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
