"""A pool's children against the real apiserver: one deleted by hand comes back at the next
sync, with no change to the pool. The pool runs no worker (replicas 0): apiserver only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    kubectl_json,
    prepare_queue,
    secret,
    workerpool,
)

pytestmark = pytest.mark.cluster

POOL = "mailer"
SERVICE = f"{POOL}-metrics"


def service(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    return kubectl_json(cluster, "service", SERVICE, "-n", namespace)


def generation(cluster: LocalCluster, namespace: str) -> int:
    pool = kubectl_json(cluster, "workerpool", POOL, "-n", namespace)
    assert pool is not None
    return int(pool["metadata"]["generation"])


def test_a_metrics_service_deleted_by_hand_comes_back(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    prepare_queue(postgres_dsn)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    apply(crds, workerpool(POOL, namespace, "mail", replicas={"min": 0, "max": 2}))
    first = wait_for("the metrics Service", lambda: service(crds, namespace), timeout=30)
    spec_generation = generation(crds, namespace)

    crds.kubectl("delete", "service", SERVICE, "-n", namespace, "--wait=true")
    back = wait_for(
        "the deleted Service to be created again",
        lambda: (
            (found := service(crds, namespace)) is not None
            and found["metadata"]["uid"] != first["metadata"]["uid"]
            and found
        ),
        timeout=30,
    )
    assert back["spec"]["selector"] == first["spec"]["selector"]
    assert back["spec"]["ports"] == first["spec"]["ports"]
    assert back["metadata"]["ownerReferences"] == first["metadata"]["ownerReferences"]
    assert generation(crds, namespace) == spec_generation  # no spec change brought it back

    crds.kubectl(
        "patch",
        "workerpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"metrics": {"service": False}}}),
    )
    wait_for(
        "the Service to go with spec.metrics.service false",
        lambda: service(crds, namespace) is None,
        timeout=30,
    )
