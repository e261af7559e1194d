"""A Monitor runs the queue's recovery primitives for the pools it selects, and only
for those; of two Monitors selecting one pool, the first by name recovers it."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    condition,
    enqueue,
    event_reasons,
    is_ready,
    kubectl_json,
    pid_of,
    pods,
    prepare_queue,
    run,
    secret,
    wide_table,
    workerpool,
)
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import Job
from workerfleet.worker.repository import Repository

pytestmark = pytest.mark.cluster


def strand_a_job(dsn: str, pool_key: str, queue: str, worker_id: str) -> int:
    """A job of ``queue`` claimed by a worker of ``pool_key`` that then falls silent (its
    lease runs out)."""

    async def go() -> int:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            repository = Repository(connector)
            await repository.register_worker(worker_id, pool_key, [queue], None, "0")
            job_id = await repository.enqueue(queue, "echo", {"x": 1})
            (claimed,) = await repository.claim(worker_id, [queue], 1, lease_seconds=1.0)
            assert claimed.id == job_id
            return job_id

    return run(go)


def job(dsn: str, job_id: int) -> Job | None:
    async def go() -> Job | None:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            return await Repository(connector).get_job(job_id)

    return run(go)


def worker_states(dsn: str) -> dict[str, str]:
    """The ghost workers' states (the pools' real workers left out)."""

    async def go() -> dict[str, str]:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            rows = await Repository(connector).list_workers()
        return {w.id: w.state for w in rows if w.id.startswith("ghost-")}

    return run(go)


def monitor_status(cluster: LocalCluster, namespace: str, name: str = "mail") -> dict[str, object]:
    found = kubectl_json(cluster, "monitor", name, "-n", namespace)
    return (found or {}).get("status") or {}


def test_monitor_rescues_expired_leases_and_reaps_dead_workers(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    prepare_queue(postgres_dsn)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    # Stranded before the pools exist, so no real worker claims them first.
    job_id = strand_a_job(postgres_dsn, f"{namespace}/emails", "emails", "ghost-1")
    theirs = strand_a_job(postgres_dsn, f"{namespace}/reports", "reports", "ghost-2")
    pool = workerpool("emails", namespace, "emails", replicas={"min": 1, "max": 1})
    pool["metadata"]["labels"] = {"team": "mail"}
    apply(crds, pool)
    other = workerpool("reports", namespace, "reports", replicas={"min": 0, "max": 1})
    apply(crds, other)
    enqueue(postgres_dsn, "emails", "echo", {"keep": False}, count=3)

    # Two Monitors select emails: "mail" comes first by name and recovers it, from the
    # moment "zz-mail" exists (created second, it never sees itself alone).
    for name in ("mail", "zz-mail"):
        apply(
            crds,
            {
                "apiVersion": "workerfleet.dev/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"team": "mail"}},
                    "interval": "2s",
                    "deadWorkerAfter": "3s",
                    "retention": {"succeeded": "1s"},
                },
            },
        )
        wait_for(
            f"the first run of Monitor {name}",
            lambda name=name: monitor_status(crds, namespace, name).get("lastRun"),  # type: ignore[misc]
            timeout=30,
        )
    status = wait_for(
        "the Monitor to rescue the stranded job and reap its worker",
        lambda: (
            (s := monitor_status(crds, namespace))
            and isinstance(totals := s.get("totals"), dict)
            and totals["stuckJobsRescued"] >= 1
            and totals["deadWorkersReaped"] >= 1
            and totals["jobsPruned"] >= 3
            and s
        ),
        timeout=60,
        describe=lambda: repr(monitor_status(crds, namespace)),
    )
    assert status["pools"] == 1
    assert status["poolNames"] == ["emails"]
    assert isinstance(status["recovered"], int)
    assert status["recovered"] >= 1
    assert condition(status, "Ready")["status"] == "True"
    # Rescued from ghost-1, the job ran on a real worker and may be pruned already.
    rescued = job(postgres_dsn, job_id)
    assert rescued is None or rescued.worker_id != "ghost-1"
    # The reports pool is selected by no Monitor: its stranded job is left alone.
    untouched = job(postgres_dsn, theirs)
    assert untouched is not None
    assert (untouched.state, untouched.worker_id) == ("running", "ghost-2")
    assert worker_states(postgres_dsn) == {"ghost-1": "dead", "ghost-2": "online"}

    second = monitor_status(crds, namespace, "zz-mail")
    second_totals = second.get("totals")
    assert isinstance(second_totals, dict)
    assert second_totals == {key: 0 for key in second_totals}
    ready = condition(second, "Ready")
    assert ready["message"] == (
        "recovery ran for 0 pools; recovered by another Monitor (the first by name): emails by mail"
    ), ready

    rows = {row["NAME"]: row for row in wide_table(crds, namespace, "monitors")}
    assert rows["mail"]["POOLS"] == "1"
    assert int(rows["mail"]["RECOVERED"]) >= 1
    assert rows["mail"]["LAST RUN"] not in ("", "<none>", "<unknown>")
    listed = crds.kubectl("get", "workerfleet", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == [
        "monitor.workerfleet.dev/mail",
        "monitor.workerfleet.dev/zz-mail",
        "workerpool.workerfleet.dev/emails",
        "workerpool.workerfleet.dev/reports",
    ]
    wait_for(
        "a Recovery event on the Monitor",
        lambda: "Recovery" in event_reasons(crds, namespace, kind="Monitor"),
        timeout=10,
    )


def test_monitor_deletes_the_pod_of_a_hung_worker(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    prepare_queue(postgres_dsn)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    pool = workerpool("emails", namespace, "emails", replicas={"min": 1, "max": 1})
    pool["metadata"]["labels"] = {"team": "mail"}
    apply(crds, pool)
    (worker,) = wait_for(
        "a ready worker",
        lambda: [p for p in pods(crds, namespace, "emails") if is_ready(p)],
        timeout=90,
    )
    pid = pid_of(worker)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive but silent: no heartbeat, no probe answers
    try:
        apply(
            crds,
            {
                "apiVersion": "workerfleet.dev/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": "mail", "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"team": "mail"}},
                    "interval": "1s",
                    "deadWorkerAfter": "3s",
                    "restartHungWorkers": True,
                },
            },
        )
        status = wait_for(
            "the Monitor to delete the hung worker's pod",
            lambda: (
                (s := monitor_status(crds, namespace))
                and isinstance(totals := s.get("totals"), dict)
                and totals["podsRestarted"] >= 1
                and s
            ),
            timeout=60,
        )
        assert isinstance(status["totals"], dict)
        assert status["totals"]["deadWorkersReaped"] >= 1
        wait_for(
            "the hung pod to be terminating or gone",
            lambda: (
                worker["metadata"]["name"]
                not in [p["metadata"]["name"] for p in pods(crds, namespace, "emails")]
            ),
            timeout=30,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
