"""Autoscaling on the local cluster: real worker pods, the real ReplicaSet controller.

Scale-in takes idle workers only, and no job runs twice because of it: every run of
a job is written down by the ``run_ledger`` tasks (localcluster/fixtures/run_ledger.py),
so a job interrupted and run again would show two runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from localcluster.control_plane import LocalCluster
from localcluster.fixtures import run_ledger
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    condition,
    event_reasons,
    kubectl_json,
    pods,
    pool_status,
    prepare_queue,
    ready_pods,
    run,
    secret,
    workerpool,
)
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest, Job
from workerfleet.worker.repository import Repository

pytestmark = pytest.mark.cluster

POOL = "scaled"
QUEUE = "scaled"
HANDLERS_DIR = run_ledger.handlers_dir()
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
T = TypeVar("T")


@pytest.fixture
def ledger_dsn(postgres_dsn: str) -> str:
    prepare_queue(postgres_dsn)
    run(lambda: _execute(postgres_dsn, run_ledger.LEDGER_DDL, script=True))
    return postgres_dsn


async def _execute(dsn: str, sql: str, script: bool = False) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        if script:
            return await connection.execute(sql)
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def ledger_pool(namespace: str, replicas: int, **spec: Any) -> dict[str, Any]:
    """A pool of single-slot workers running the ledger tasks, sized one worker per job."""
    return workerpool(
        POOL,
        namespace,
        QUEUE,
        replicas={"min": replicas, "max": replicas},
        scaling={"jobsPerWorker": 1, "scaleDownDelay": "0s", "pollInterval": "2s"},
        worker={
            "handlers": run_ledger.MODULE,
            "concurrency": 1,
            "shutdownGracePeriod": "5s",
        },
        env=[
            {"name": "PYTHONPATH", "value": str(HANDLERS_DIR)},
            {
                "name": run_ledger.DSN_VARIABLE,
                "valueFrom": {"secretKeyRef": {"name": "queue-db", "key": "dsn"}},
            },
        ],
        **spec,
    )


def resize(cluster: LocalCluster, namespace: str, **replicas: int) -> None:
    patch = {"spec": {"replicas": replicas}}
    cluster.kubectl("patch", "workerpool", POOL, "-n", namespace, "--type=merge",
                    "-p", json.dumps(patch))  # fmt: skip


def deployment_replicas(cluster: LocalCluster, namespace: str) -> int | None:
    found = kubectl_json(cluster, "deployment", POOL, "-n", namespace)
    return None if found is None else int(found["spec"]["replicas"])


def enqueue_sleeps(dsn: str, count: int, seconds: float) -> list[int]:
    async def go() -> list[int]:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            requests = [EnqueueRequest(QUEUE, "sleep", {"seconds": seconds})] * count
            return await Repository(connector).enqueue_many(requests)

    return run(go)


class Trickle:
    """Enqueues one short job every ``every`` seconds from a thread, until stopped: idle
    workers keep claiming while a scale-in picks them (the race it must survive)."""

    def __init__(self, dsn: str, seconds: float, every: float) -> None:
        self.dsn, self.seconds, self.every = dsn, seconds, every
        self.ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: run(self._go), daemon=True)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _go(self) -> None:
        async with await Connector.open(self.dsn, min_size=1, max_size=1) as connector:
            repository = Repository(connector)
            while not self._stop.is_set():
                self.ids.append(await repository.enqueue(QUEUE, "sleep", {"seconds": self.seconds}))
                await asyncio.sleep(self.every)


def jobs(dsn: str, ids: list[int]) -> list[Job]:
    async def go() -> list[Job]:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            found = [await Repository(connector).get_job(job_id) for job_id in ids]
        return [job for job in found if job is not None]

    return run(go)


def busy_pods(dsn: str) -> set[str]:
    sql = "SELECT pod FROM workerfleet.workers WHERE state = 'online' AND current_jobs > 0"

    async def go() -> set[str]:
        connection = await asyncpg.connect(dsn)
        try:
            return {row["pod"] for row in await connection.fetch(sql)}
        finally:
            await connection.close()

    return run(go)


def when(value: T, check: Callable[[T], bool]) -> T | None:
    """``value`` once ``check`` holds for it (for wait_for)."""
    return value if check(value) else None


def all_succeeded(found: list[Job]) -> bool:
    return all(job.state == "succeeded" for job in found)


def operator_metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    _, body = operator.get("/metrics")
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_scale_in_takes_the_idle_workers_and_the_busy_ones_finish_their_jobs(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, ledger_dsn: str
) -> None:
    apply(crds, secret("queue-db", namespace, ledger_dsn))
    apply(crds, ledger_pool(namespace, replicas=4))
    wait_for("4 ready workers", lambda: ready_pods(crds, namespace, POOL, 4), timeout=120)
    job_ids = enqueue_sleeps(ledger_dsn, count=2, seconds=30)
    busy = wait_for(
        "two workers to report a job at their heartbeat",
        lambda: when(busy_pods(ledger_dsn), lambda found: len(found) == 2),
        timeout=30,
    )

    resize(crds, namespace, min=0)  # the queue alone now asks for 2: the two running jobs
    wait_for("replicas 2", lambda: deployment_replicas(crds, namespace) == 2, timeout=60)
    survivors = wait_for(
        "the two idle pods to go",
        lambda: when(pods(crds, namespace, POOL), lambda left: len(left) == 2),
        timeout=60,
    )
    assert {p["metadata"]["name"] for p in survivors} == busy
    for survivor in survivors:
        assert survivor["metadata"]["annotations"][DELETION_COST] == "100"
    assert all(job.state == "running" for job in jobs(ledger_dsn, job_ids))  # still at it

    done = wait_for(
        "both jobs to finish",
        lambda: when(jobs(ledger_dsn, job_ids), all_succeeded),
        timeout=90,
    )
    assert [job.attempt for job in done] == [1, 1]
    assert run(lambda: _execute(ledger_dsn, run_ledger.RERUNS_SQL)) == 0
    assert run(lambda: _execute(ledger_dsn, run_ledger.UNFINISHED_SQL)) == 0
    assert operator_metric(operator, "workerfleet_operator_drains_total", outcome="started") == 2
    wait_for(
        "both drains counted as completed",
        lambda: operator_metric(operator, "workerfleet_operator_drains_total",
                                outcome="completed") == 2,
        timeout=30,
    )  # fmt: skip
    assert operator_metric(operator, "workerfleet_operator_scale_in_interrupted_jobs_total") == 0
    status = pool_status(crds, namespace, POOL)
    assert condition(status, "ScalingActive")["status"] == "True"
    assert "lastScaleTime" in status
    assert "Scaled" in event_reasons(crds, namespace)


def test_twenty_short_job_workers_scale_to_two_and_no_job_runs_twice(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, ledger_dsn: str
) -> None:
    apply(crds, secret("queue-db", namespace, ledger_dsn))
    apply(crds, ledger_pool(namespace, replicas=20))
    wait_for("20 ready workers", lambda: ready_pods(crds, namespace, POOL, 20), timeout=300)
    job_ids = enqueue_sleeps(ledger_dsn, count=400, seconds=0.25)
    wait_for(
        "the workers to be busy",
        lambda: run(lambda: _execute(ledger_dsn, "SELECT count(*) FROM run_ledger.runs")) >= 20,
        timeout=60,
    )

    # Shrink while the queue drains and new jobs keep coming: workers turn idle one by
    # one, and idle ones claim a job between their last heartbeat and the drain.
    with Trickle(ledger_dsn, seconds=0.25, every=0.1) as trickle:
        resize(crds, namespace, min=2, max=2)
        wait_for("replicas 2", lambda: deployment_replicas(crds, namespace) == 2, timeout=180)
        wait_for("2 pods left", lambda: len(pods(crds, namespace, POOL)) == 2, timeout=120)
    job_ids += trickle.ids
    done = wait_for(
        "every job to finish",
        lambda: when(jobs(ledger_dsn, job_ids), all_succeeded),
        timeout=180,
    )
    assert {job.attempt for job in done} == {1}
    assert run(lambda: _execute(ledger_dsn, run_ledger.RERUNS_SQL)) == 0
    assert run(lambda: _execute(ledger_dsn, run_ledger.UNFINISHED_SQL)) == 0
    assert operator_metric(operator, "workerfleet_operator_scale_in_interrupted_jobs_total") == 0
    wait_for(
        "18 drains counted as completed",
        lambda: operator_metric(operator, "workerfleet_operator_drains_total",
                                outcome="completed") == 18,
        timeout=60,
        describe=lambda: operator.get("/metrics")[1][-3000:],
    )  # fmt: skip
