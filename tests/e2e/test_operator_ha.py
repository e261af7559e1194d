"""Two operator replicas of the chart, one acting: exactly one writes, SIGKILL of its
process lets the other take over (the figures are printed), and the API server's audit
log, which names the pod behind every bound token, never shows both writing."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.waiting import wait_for
from tests.chart_support import (
    CHART,
    Write,
    audited_writes,
    helm,
    lease_holder,
    operator_pods,
    pid_of,
    ready,
    roles,
)
from tests.operator_support import (
    apply,
    enqueue,
    pool_status,
    prepare_queue,
    secret,
    workerpool,
)

pytestmark = pytest.mark.cluster

POOL = "ha"
TAKEOVER_TIMEOUT_SECONDS = 60.0


def acting(cluster: LocalCluster, namespace: str, release: str) -> dict[str, str | None] | None:
    found = operator_pods(cluster, namespace, release)
    if len(found) != 2 or not all(ready(pod) for pod in found):
        return None
    by_pod = roles(found)
    return by_pod if sorted(map(str, by_pod.values())) == ["leader", "standby"] else None


def writers_in_turn(writes: list[Write]) -> list[str]:
    """The pods that wrote, in the order their turns came: [A, B] for A...A B...B."""
    turns: list[str] = []
    for write in writes:
        if not turns or turns[-1] != write.pod:
            turns.append(write.pod)
    return turns


def test_one_of_two_replicas_acts_and_the_other_takes_over_after_sigkill(
    crds: LocalCluster, namespace: str, postgres_dsn: str
) -> None:
    cluster = crds
    pool_namespace = f"{namespace}-pools"
    cluster.kubectl("create", "namespace", pool_namespace)
    release = f"ha-{namespace}"
    installed = helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "replicaCount=2",
        "--set",
        f"watchNamespaces={{{pool_namespace}}}",
        "--wait",
        kubeconfig=cluster.kubeconfig,
    )
    assert installed.returncode == 0, installed.stderr
    lease = f"{release}-workerfleet"
    account = f"system:serviceaccount:{namespace}:{release}-workerfleet"
    try:
        pair = wait_for(
            "one replica acting, one standing by", lambda: acting(cluster, namespace, release)
        )
        leader = next(pod for pod, role in pair.items() if role == "leader")
        standby = next(pod for pod, role in pair.items() if role == "standby")
        assert lease_holder(cluster, namespace, lease) == leader

        prepare_queue(postgres_dsn)
        apply(cluster, secret("queue-db", pool_namespace, postgres_dsn))
        apply(cluster, workerpool(POOL, pool_namespace, POOL, replicas={"min": 1, "max": 2}))
        enqueue(postgres_dsn, POOL, "echo", {"n": 1}, 5)
        wait_for(
            "the leader to write the pool's status",
            lambda: pool_status(cluster, pool_namespace, POOL).get("observedGeneration") == 1,
            timeout=90,
        )
        before = audited_writes(cluster, account)
        assert {write.pod for write in before} == {leader}, writers_in_turn(before)

        pods = {pod["metadata"]["name"]: pod for pod in operator_pods(cluster, namespace, release)}
        killed_at = datetime.now(UTC)
        started = time.monotonic()
        os.kill(pid_of(pods[leader]), signal.SIGKILL)
        # Something the new leader must write: a spec change (Deployment and status).
        cluster.kubectl(
            "patch",
            "workerpool",
            POOL,
            "-n",
            pool_namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"replicas": {"min": 2, "max": 2}}}),
        )
        wait_for(
            "the standby to take the Lease",
            lambda: lease_holder(cluster, namespace, lease) == standby,
            timeout=TAKEOVER_TIMEOUT_SECONDS,
            interval=0.1,
        )
        lease_seconds = time.monotonic() - started

        def first_write_by_new_leader() -> Write | None:
            return next(
                (
                    write
                    for write in audited_writes(cluster, account)
                    if write.pod == standby and write.resource != "leases"
                ),
                None,
            )

        first = wait_for(
            "the new leader's first write",
            first_write_by_new_leader,
            timeout=TAKEOVER_TIMEOUT_SECONDS,
            interval=0.1,
        )
        wait_for(
            "the pool to reach the new generation",
            lambda: pool_status(cluster, pool_namespace, POOL).get("observedGeneration") == 2,
            timeout=TAKEOVER_TIMEOUT_SECONDS,
        )
        write_seconds = (first.at - killed_at).total_seconds()
        print(
            f"\ntakeover after SIGKILL: Lease taken in {lease_seconds:.1f}s, first write "
            f"({first.verb} {first.resource} {first.name}) after {write_seconds:.1f}s "
            "(configured worst case for the Lease: 8s + 2 x 1s)"
        )

        # The killed replica restarts as a standby; the new leader stays.
        restarted = wait_for(
            "both replicas ready again, the new one acting",
            lambda: acting(cluster, namespace, release),
            timeout=TAKEOVER_TIMEOUT_SECONDS,
        )
        assert restarted == {leader: "standby", standby: "leader"}

        writes = audited_writes(cluster, account)
        assert writers_in_turn(writes) == [leader, standby]
        assert all(write.at < killed_at for write in writes if write.pod == leader)
        acted = {(w.resource, w.pod) for w in writes}
        assert ("workerpools/status", standby) in acted
        assert ("deployments", standby) in acted
    finally:
        cluster.kubectl("delete", "namespace", pool_namespace, "--wait=false", check=False)
        helm("uninstall", release, "-n", namespace, kubeconfig=cluster.kubeconfig)


def test_writers_in_turn_tells_interleaving_apart() -> None:
    def at(second: int, pod: str) -> Write:
        return Write(datetime.fromtimestamp(second, UTC), pod, "patch", "deployments", "x")

    assert writers_in_turn([at(1, "a"), at(2, "a"), at(3, "b")]) == ["a", "b"]
    assert writers_in_turn([at(1, "a"), at(2, "b"), at(3, "a")]) == ["a", "b", "a"]
    empty: list[Any] = []
    assert writers_in_turn(empty) == []
