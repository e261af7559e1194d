"""KEDA's operator and metrics adapter run as local processes against the local cluster,
and the controller-manager's HPA controller scales a Deployment on a workerfleet queue's
depth through them, as in a real cluster: the same wiring ``make bench-scale`` uses.

Needs KEDA's binaries (``make keda-bin``; CI builds them): skipped, saying so, when they
are not built."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import keda_manifests, tools
from localcluster.control_plane import LocalCluster
from localcluster.keda import Keda
from localcluster.waiting import wait_for
from workerfleet.worker.migrations import migrate

QUEUE = "keda-test"
JOBS = 25
JOBS_PER_WORKER = 10
MAX_REPLICAS = 5
SCALE_TIMEOUT_SECONDS = 120.0


@pytest.fixture
def keda(kube_cluster: LocalCluster) -> Iterator[Keda]:
    try:
        running = Keda.built(kube_cluster, build=False)
    except tools.ToolNotBuilt as error:
        pytest.skip(f"KEDA is not built here ({error}); `make keda-bin` builds it")
    running.up()
    try:
        yield running
    finally:
        running.down()


def _deployment(namespace: str) -> dict[str, Any]:
    labels = {"app": "keda-target"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "target", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "none", "command": ["sleep", "600"]}],
                },
            },
        },
    }


def _replicas(cluster: LocalCluster, namespace: str) -> int:
    out = cluster.kubectl(
        "get", "deployment", "target", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    return int(out or 0)


async def test_keda_scales_a_deployment_on_the_queue_depth_through_the_hpa(
    keda: Keda, kube_cluster: LocalCluster, namespace: str
) -> None:
    dsn = kube_cluster.postgres.create_database("keda")
    await migrate(dsn)
    database = dsn.rsplit("/", 1)[1]
    kube_cluster.postgres.psql(
        f"SELECT workerfleet.enqueue('{QUEUE}', 'noop') FROM generate_series(1, {JOBS})",
        database,
    )
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "queue-db", "namespace": namespace},
            "stringData": {"dsn": dsn},
        },
        _deployment(namespace),
        keda_manifests.trigger_authentication(namespace, "queue-db", "queue-db", "dsn"),
        keda_manifests.scaled_object(
            namespace,
            "workers",
            "target",
            QUEUE,
            JOBS_PER_WORKER,
            (0, MAX_REPLICAS),
            "queue-db",
            keda_manifests.FAST,
        ),
    ]
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )

    wanted = -(-JOBS // JOBS_PER_WORKER)
    wait_for(
        f"KEDA and the HPA to scale the Deployment to {wanted}",
        lambda: _replicas(kube_cluster, namespace) == wanted,
        timeout=SCALE_TIMEOUT_SECONDS,
        describe=lambda: (
            f"replicas {_replicas(kube_cluster, namespace)}; "
            + kube_cluster.kubectl("get", "scaledobject,hpa", "-n", namespace, check=False).stdout
            + keda.log_tail("keda-operator")
        ),
    )
    metric = json.loads(
        kube_cluster.kubectl(
            "get",
            "--raw",
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/"
            f"{keda_manifests.external_metric_name()}"
            f"?labelSelector={keda_manifests.SCALED_OBJECT_NAME_LABEL}%3Dworkers",
        ).stdout
    )
    assert [item["value"] for item in metric["items"]] == [str(JOBS)]
    hpa = json.loads(
        kube_cluster.kubectl(
            "get", "hpa", keda_manifests.hpa_name("workers"), "-n", namespace, "-o", "json"
        ).stdout
    )
    assert hpa["spec"]["maxReplicas"] == MAX_REPLICAS
    assert hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"] == str(JOBS_PER_WORKER)
