"""Worker incarnations on the local cluster: a killed worker's jobs go back at once, and the
Monitor restarts a pod only for the hung incarnation it runs now."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import datetime
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    enqueue,
    is_ready,
    kubectl_json,
    pid_of,
    pods,
    prepare_queue,
    run,
    secret,
    workerpool,
)
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import Job, WorkerRow
from workerfleet.worker.repository import Repository

pytestmark = pytest.mark.cluster

POOL = "emails"
# Far longer than any wait below: whatever recovers a job here, it is not its lease.
LEASE = "120s"
JOB_SECONDS = 600
DEAD_WORKER_AFTER_SECONDS = 3


def jobs(dsn: str) -> list[Job]:
    async def go() -> list[Job]:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            return await Repository(connector).list_jobs(queue=POOL, limit=100)

    return run(go)


def workers(dsn: str) -> list[WorkerRow]:
    async def go() -> list[WorkerRow]:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            return await Repository(connector).list_workers()

    return run(go)


def running_on_one_worker(dsn: str, count: int) -> str | None:
    """The worker holding ``count`` running jobs, once they all run."""
    running = [j for j in jobs(dsn) if j.state == "running"]
    holders = {j.worker_id for j in running}
    if len(running) == count and len(holders) == 1:
        return holders.pop()
    return None


def one_ready_pod(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    found = [p for p in pods(cluster, namespace, POOL) if is_ready(p)]
    return found[0] if len(found) == 1 else None


def restarted_and_ready(cluster: LocalCluster, namespace: str, uid: str) -> dict[str, Any] | None:
    pod = one_ready_pod(cluster, namespace)
    if pod is None or pod["metadata"]["uid"] != uid:
        return None
    (container,) = pod["status"]["containerStatuses"]
    return pod if container["restartCount"] >= 1 and pid_of(pod) is not None else None


def start(crds: LocalCluster, namespace: str, dsn: str, **spec: Any) -> dict[str, Any]:
    prepare_queue(dsn)
    apply(crds, secret("queue-db", namespace, dsn))
    pool = workerpool(POOL, namespace, POOL, replicas={"min": 1, "max": 1}, **spec)
    pool["metadata"]["labels"] = {"team": "mail"}
    pool["spec"]["worker"]["leaseDuration"] = LEASE
    apply(crds, pool)
    found: dict[str, Any] = wait_for(
        "a ready worker", lambda: one_ready_pod(crds, namespace), timeout=90
    )
    return found


def test_a_killed_workers_jobs_are_released_at_once_not_at_lease_expiry(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    pod = start(crds, namespace, postgres_dsn)
    enqueue(postgres_dsn, POOL, "sleep", {"seconds": JOB_SECONDS}, count=4)
    killed = wait_for(
        "4 jobs running on the worker",
        lambda: running_on_one_worker(postgres_dsn, 4),
        timeout=30,
    )
    pid = pid_of(pod)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    # The container restarts in the same pod; its new worker takes the jobs back, long
    # before their 120 s leases would have let anyone do so.
    def retaken_jobs() -> list[Job] | None:
        found = jobs(postgres_dsn)
        taken = all(j.state == "running" and j.worker_id != killed for j in found)
        return found if found and taken else None

    retaken: list[Job] = wait_for(
        "the killed worker's jobs released and running again under its successor",
        retaken_jobs,
        timeout=45,
        interval=0.2,
    )
    assert {j.attempt for j in retaken} == {2}
    for job in retaken:
        assert job.last_error is not None
        assert f"worker {killed} died (its container in pod" in job.last_error
    (old,) = [w for w in workers(postgres_dsn) if w.id == killed]
    assert old.state == "dead"
    wait_for(
        "the same pod ready again, its container restarted",
        lambda: restarted_and_ready(crds, namespace, pod["metadata"]["uid"]),
        timeout=30,
    )
    code, metrics = operator.get("/metrics")
    assert code == 200
    assert "workerfleet_operator_dead_workers_released_total 1.0" in metrics
    assert 'workerfleet_operator_dead_worker_jobs_total{outcome="released"} 4.0' in metrics


def monitor_status(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    found = kubectl_json(cluster, "monitor", "mail", "-n", namespace)
    return dict((found or {}).get("status") or {})


def ran_after(cluster: LocalCluster, namespace: str, moment: float) -> dict[str, Any] | None:
    status = monitor_status(cluster, namespace)
    last_run = status.get("lastRun")
    if not isinstance(last_run, str):
        return None
    ran_at = datetime.fromisoformat(last_run.replace("Z", "+00:00")).timestamp()
    return status if ran_at > moment else None


def test_the_monitor_restarts_a_hung_worker_but_never_a_pod_whose_container_restarted(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    pod = start(crds, namespace, postgres_dsn)
    uid = pod["metadata"]["uid"]
    apply(
        crds,
        {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "mail", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"team": "mail"}},
                "interval": "1s",
                "deadWorkerAfter": f"{DEAD_WORKER_AFTER_SECONDS}s",
                "restartHungWorkers": True,
            },
        },
    )
    wait_for("the Monitor's first run", lambda: ran_after(crds, namespace, 0), timeout=30)
    pid = pid_of(pod)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    restarted = wait_for(
        "the container restarted in the same pod",
        lambda: restarted_and_ready(crds, namespace, uid),
        timeout=60,
    )
    # Well past deadWorkerAfter for the killed incarnation, with Monitor runs in between
    # (whole-second timestamps: two seconds more).
    status = wait_for(
        "a Monitor run past deadWorkerAfter of the killed worker",
        lambda: ran_after(crds, namespace, killed_at + DEAD_WORKER_AFTER_SECONDS + 3),
        timeout=60,
    )
    assert status["totals"]["podsRestarted"] == 0
    (still,) = pods(crds, namespace, POOL)
    assert still["metadata"]["uid"] == uid
    assert is_ready(still)

    hung = pid_of(restarted)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # alive but silent: the incarnation the pod runs now
    try:
        wait_for(
            "the Monitor to delete the pod of the hung worker",
            lambda: monitor_status(crds, namespace)["totals"]["podsRestarted"] == 1,
            timeout=60,
        )
        wait_for(
            "a replacement pod",
            lambda: (p := one_ready_pod(crds, namespace)) and p["metadata"]["uid"] != uid,
            timeout=90,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
