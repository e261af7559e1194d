"""Autoscaling through a database outage, against a real PostgreSQL stopped and started
and the real apiserver. The pool's pods never start (their nodeSelector matches no node):
the queue alone sizes it, and nothing drains it meanwhile."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.postgres import PostgresServer
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    condition,
    enqueue,
    kubectl_json,
    pool_status,
    prepare_queue,
    secret,
    workerpool,
)

pytestmark = pytest.mark.cluster

POOL = "outage"
QUEUE = "outage"
OUTAGE_SECONDS = 60.0
POLL_INTERVAL = "2s"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own: stopping it must not stop anyone else's database."""
    server = PostgresServer(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def replicas(cluster: LocalCluster, namespace: str) -> int | None:
    found = kubectl_json(cluster, "deployment", POOL, "-n", namespace)
    return None if found is None else int(found["spec"]["replicas"])


def scaling_active(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return condition(pool_status(cluster, namespace, POOL), "ScalingActive")


def test_a_database_outage_holds_the_replicas_and_scaling_resumes_by_itself(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, own_postgres: PostgresServer
) -> None:
    dsn = own_postgres.create_database()
    prepare_queue(dsn)
    enqueue(dsn, QUEUE, "sleep", {"seconds": 1}, count=80)  # 8 workers' worth at 10 per worker
    apply(crds, secret("queue-db", namespace, dsn))
    apply(
        crds,
        workerpool(
            POOL,
            namespace,
            QUEUE,
            replicas={"min": 0, "max": 10},
            scaling={"jobsPerWorker": 10, "pollInterval": POLL_INTERVAL, "fallbackReplicas": 1},
            template={"spec": {"nodeSelector": {"workerfleet.dev/test": "no-such-node"}}},
        ),
    )
    wait_for("8 replicas from the queue", lambda: replicas(crds, namespace) == 8, timeout=60)
    wait_for(
        "ScalingActive=True",
        lambda: scaling_active(crds, namespace).get("status") == "True",
        timeout=30,
    )

    own_postgres.stop()
    stopped = time.monotonic()
    inactive = wait_for(
        "ScalingActive=False once the database is gone",
        lambda: (found := scaling_active(crds, namespace)).get("status") == "False" and found,
        timeout=30,
        interval=0.2,
    )
    noticed = time.monotonic() - stopped
    print(f"ScalingActive=False {noticed:.1f}s after the stop (pollInterval {POLL_INTERVAL})")
    assert inactive["reason"] == "QueueUnreadable"
    assert "the queue cannot be read" in inactive["message"]
    seen = set()
    while time.monotonic() - stopped < OUTAGE_SECONDS:
        seen.add(replicas(crds, namespace))
        time.sleep(1.0)
    assert seen == {8}  # held, never lowered, through the whole outage
    status = pool_status(crds, namespace, POOL)
    assert status["desiredReplicas"] == 8
    assert status["scaling"]["reason"] == "QueueUnreadable"

    own_postgres.start()
    restarted = time.monotonic()
    wait_for(
        "ScalingActive=True again, the same operator process",
        lambda: scaling_active(crds, namespace).get("status") == "True",
        timeout=180,
        describe=lambda: json.dumps(pool_status(crds, namespace, POOL), indent=1),
    )
    print(f"ScalingActive=True {time.monotonic() - restarted:.1f}s after the restart")
    status = pool_status(crds, namespace, POOL)
    assert condition(status, "QueueReachable")["status"] == "True"
    assert status["scaling"]["reason"] == "QueueDepth"
    assert replicas(crds, namespace) == 8
    assert operator.process.poll() is None  # no restart
