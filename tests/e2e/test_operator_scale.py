"""The operator's own timing against the real cluster: a deleted pool or Monitor is forgotten
at once, and a pool's status follows its queue and pods through events, not a cadence.

The operator runs as its own user (localcluster.pki.OPERATOR), every request of which the
kube-apiserver's audit log records: the tests read what it sent, and when."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from localcluster import pki
from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    condition,
    enqueue,
    kubectl_json,
    pid_of,
    pods,
    pool_status,
    prepare_queue,
    ready_pods,
    run,
    secret,
    workerpool,
)
from workerfleet.operator import reasons
from workerfleet.worker.connector import Connector
from workerfleet.worker.repository import Repository

pytestmark = pytest.mark.cluster

READY_TIMEOUT = 90.0


def start_operator(
    cluster: LocalCluster, namespace: str, log: Path, **settings: str
) -> OperatorProcess:
    cluster.ensure_audit_policy()  # a cluster started before the operator's user was audited
    env = {f"WORKERFLEET_OPERATOR_{name.upper()}": value for name, value in settings.items()}
    process = OperatorProcess(cluster.operator_kubeconfig, namespace, log, env)
    process.wait_ready()
    return process


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    """Operators started by the test, stopped (and their logs printed) afterwards."""
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        code = process.stop()
        print(f"--- operator log (exit {code}) ---\n{process.logs()[-20000:]}")


def metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    status, text = operator.get("/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def requests_about(
    cluster: LocalCluster, namespace: str, names: set[str], after: float
) -> list[dict[str, Any]]:
    """The operator's requests on WorkerPools or Monitors named ``names`` received after
    ``after`` (unix seconds), from the audit log."""
    found = []
    with cluster.audit_log.open() as lines:
        for line in lines:
            if pki.OPERATOR.user not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (
                event.get("stage") == "ResponseComplete"
                and event.get("user", {}).get("username") == pki.OPERATOR.user
                and ref.get("namespace") == namespace
                and ref.get("resource") in ("workerpools", "monitors")
                and ref.get("name") in names
                and _received(event) > after
            ):
                found.append(event)
    return found


def _received(event: dict[str, Any]) -> float:
    stamp = event["requestReceivedTimestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_a_deleted_pool_and_monitor_are_forgotten_at_once(
    crds: LocalCluster,
    namespace: str,
    postgres_dsn: str,
    tmp_path: Path,
    stopped: list[OperatorProcess],
) -> None:
    prepare_queue(postgres_dsn)
    # Every pool is due every second: a deleted pool still timed would show within seconds.
    operator = start_operator(
        crds, namespace, tmp_path / "operator.log", status_resync_interval="1s"
    )
    stopped.append(operator)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    for name in ("doomed", "kept"):
        labels = {"team": name}
        pool = workerpool(name, namespace, name, replicas={"min": 0, "max": 1})
        pool["metadata"]["labels"] = labels
        apply(crds, pool)
    apply(
        crds,
        {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "doomed", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"team": "doomed"}}, "interval": "1s"},
        },
    )
    wait_for(
        "both pools and the Monitor in the scheduler",
        lambda: (
            metric(operator, "workerfleet_operator_scheduled_objects", kind="pool") == 2
            and metric(operator, "workerfleet_operator_scheduled_objects", kind="monitor") == 1
        ),
        timeout=60,
    )
    wait_for("the doomed pool's status", lambda: pool_status(crds, namespace, "doomed"), 60)
    wait_for(
        "the Monitor's status writes",
        lambda: requests_about(crds, namespace, {"doomed"}, 0.0),
        timeout=60,
    )

    crds.kubectl("delete", "workerpool/doomed", "monitor/doomed", "-n", namespace)
    wait_for(
        "the operator to forget both",
        lambda: (
            metric(operator, "workerfleet_operator_scheduled_objects", kind="pool") == 1
            and metric(operator, "workerfleet_operator_scheduled_objects", kind="monitor") == 0
        ),
        timeout=30,
    )
    forgotten_at = time.time()
    enqueue(postgres_dsn, "doomed", "echo", {}, 3)  # a NOTIFY for the deleted pool's queue
    backstop = metric(operator, "workerfleet_operator_pool_syncs_total", trigger="backstop")
    wait_for(
        "five more rounds of backstop syncs (of the pool that is left)",
        lambda: (
            metric(operator, "workerfleet_operator_pool_syncs_total", trigger="backstop")
            >= backstop + 5
        ),
        timeout=60,
    )
    assert requests_about(crds, namespace, {"doomed"}, forgotten_at) == []
    # The pool that is left is still served: its status is patched as it changes.
    enqueue(postgres_dsn, "kept", "echo", {}, 2)
    wait_for(
        "the kept pool's status to show its jobs",
        lambda: pool_status(crds, namespace, "kept").get("queue", {}).get("pending") == 2,
        timeout=30,
    )


def syncs(operator: OperatorProcess) -> dict[str, float]:
    return {
        trigger: metric(operator, "workerfleet_operator_pool_syncs_total", trigger=trigger)
        for trigger in ("notify", "queue", "children", "due", "backstop")
    }


def test_status_follows_the_queue_and_the_pods_through_events(
    crds: LocalCluster,
    namespace: str,
    postgres_dsn: str,
    tmp_path: Path,
    stopped: list[OperatorProcess],
) -> None:
    """With no backstop and no poll for an hour, only events can refresh the status: an
    enqueue (its NOTIFY), a drain (no NOTIFY: the database's stats round sees it) and a
    worker dying (the pod watch) each show, and no due sync ran meanwhile."""
    prepare_queue(postgres_dsn)
    operator = start_operator(
        crds, namespace, tmp_path / "operator.log", status_resync_interval="1h"
    )
    stopped.append(operator)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    pool = workerpool(
        "fresh",
        namespace,
        "fresh",
        replicas={"min": 0, "max": 1},
        # No worker wakes for the jobs: the queue changes only as the test says.
        scaling={"pollInterval": "1h", "activationJobs": 1_000_000},
    )
    apply(crds, pool)
    wait_for("the first status", lambda: pool_status(crds, namespace, "fresh").get("queue"), 60)

    before = syncs(operator)
    ids = enqueue(postgres_dsn, "fresh", "echo", {}, 7)
    wait_for(
        "status.queue to show the enqueue",
        lambda: pool_status(crds, namespace, "fresh").get("queue", {}).get("pending") == 7,
        timeout=30,
    )
    after_enqueue = syncs(operator)
    assert after_enqueue["notify"] > before["notify"]

    cancel(postgres_dsn, ids)
    wait_for(
        "status.queue to show the drain",
        lambda: pool_status(crds, namespace, "fresh").get("queue", {}).get("pending") == 0,
        timeout=30,
    )
    after_drain = syncs(operator)
    assert after_drain["queue"] > after_enqueue["queue"]
    assert after_drain["notify"] == after_enqueue["notify"]  # a cancel sends no NOTIFY
    # Nothing refreshed it on the backstop timer ("due" syncs may write a change held back
    # by the one-write-a-second spacing).
    assert after_drain["backstop"] == before["backstop"]

    pool["spec"]["replicas"]["min"] = 1
    apply(crds, pool)
    wait_for("a ready worker", lambda: ready_pods(crds, namespace, "fresh", 1), READY_TIMEOUT)
    wait_for(
        "the status to show it",
        lambda: pool_status(crds, namespace, "fresh").get("readyReplicas") == 1,
        timeout=30,
    )
    before_kill = syncs(operator)
    (victim,) = pods(crds, namespace, "fresh")
    pid = pid_of(victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    degraded = wait_for(
        "the dead worker in the status",
        lambda: (
            (s := pool_status(crds, namespace, "fresh"))
            and condition(s, "Degraded").get("status") == "True"
            and s
        ),
        timeout=30,
        interval=0.2,
    )
    assert degraded["readyReplicas"] == 0
    after_kill = syncs(operator)
    assert after_kill["children"] > before_kill["children"]
    assert after_kill["backstop"] == before_kill["backstop"]


def test_a_pool_at_rest_is_not_polled_and_a_held_scale_down_wakes_by_itself(
    crds: LocalCluster,
    namespace: str,
    postgres_dsn: str,
    tmp_path: Path,
    stopped: list[OperatorProcess],
) -> None:
    """While its database's stats round reads the queue, a pool's pollInterval makes no
    sync (the round pokes it on any change); a scale-down held back by scaleDownDelay
    still happens when the window lets go, although nothing else would sync the pool."""
    prepare_queue(postgres_dsn)
    operator = start_operator(
        crds, namespace, tmp_path / "operator.log", status_resync_interval="1h"
    )
    stopped.append(operator)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    pool = workerpool(
        "rest",
        namespace,
        "rest",
        replicas={"min": 0, "max": 2},
        scaling={"pollInterval": "1s", "scaleDownDelay": "5s", "activationJobs": 1_000_000},
    )
    apply(crds, pool)
    wait_for("the first status", lambda: pool_status(crds, namespace, "rest").get("queue"), 60)
    # Settled: the pool's status stopped changing and its database's round serves it.
    wait_for(
        "a covered pool",
        lambda: metric(operator, "workerfleet_operator_stats_rounds_total") > 3,
        30,
    )
    before = syncs(operator)
    rounds = metric(operator, "workerfleet_operator_stats_rounds_total")
    wait_for(
        "five more stats rounds (five poll intervals)",
        lambda: metric(operator, "workerfleet_operator_stats_rounds_total") >= rounds + 5,
        timeout=30,
    )
    assert syncs(operator)["due"] == before["due"]

    pool["spec"]["replicas"]["min"] = 1
    apply(crds, pool)
    wait_for("a ready worker", lambda: ready_pods(crds, namespace, "rest", 1), READY_TIMEOUT)
    pool["spec"]["replicas"]["min"] = 0
    apply(crds, pool)
    # The spec's sync recommends 0, held by the recommendation of 1 in the last 5s; only
    # the window's end can let it go (no poll, no backstop, no queue change).
    wait_for(
        "the held scale-down to happen",
        lambda: (
            (kubectl_json(crds, "deployment", "rest", "-n", namespace) or {})
            .get("spec", {})
            .get("replicas")
            == 0
        ),
        timeout=60,
    )


def cancel(dsn: str, ids: list[int]) -> None:
    async def go() -> None:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            for job_id in ids:
                await Repository(connector).cancel(job_id)

    run(go)


def service_applies(
    cluster: LocalCluster, namespace: str, name: str, after: float
) -> list[dict[str, Any]]:
    """The operator's writes of Service ``name`` received after ``after`` (unix seconds)."""
    found = []
    with cluster.audit_log.open() as lines:
        for line in lines:
            if pki.OPERATOR.user not in line or name not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (
                event.get("stage") == "ResponseComplete"
                and event.get("user", {}).get("username") == pki.OPERATOR.user
                and event.get("verb") in ("create", "patch", "update")
                and ref.get("namespace") == namespace
                and ref.get("resource") == "services"
                and ref.get("name") == name
                and _received(event) > after
            ):
                found.append(event)
    return found


def test_a_permanent_apply_failure_backs_off(
    crds: LocalCluster,
    namespace: str,
    postgres_dsn: str,
    tmp_path: Path,
    stopped: list[OperatorProcess],
) -> None:
    """A metrics Service the API server refuses every time (a quota allows no Service) is
    not sent again at every sync: the sends back off while the pool syncs every second,
    the Degraded condition says so, and the Service comes once the quota is gone.

    Before, every sync sent it again: 47 such pools made 9.3 API requests a second."""
    prepare_queue(postgres_dsn)
    apply(
        crds,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-services", "namespace": namespace},
            "spec": {"hard": {"services": "0"}},
        },
    )
    # Until the quota controller has counted the namespace the refusal reads differently.
    wait_for(
        "the quota to be counted",
        lambda: (
            (kubectl_json(crds, "resourcequota", "no-services", "-n", namespace) or {})
            .get("status", {})
            .get("used")
        ),
        timeout=60,
    )
    operator = start_operator(
        crds, namespace, tmp_path / "operator.log", status_resync_interval="1s"
    )
    stopped.append(operator)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    apply(crds, workerpool("refused", namespace, "refused", replicas={"min": 0, "max": 1}))

    def backing_off() -> dict[str, Any] | None:
        found = condition(pool_status(crds, namespace, "refused"), "Degraded")
        return found if "times in a row" in found.get("message", "") else None

    degraded = wait_for(
        "the Degraded condition to say the apply backs off", backing_off, timeout=60
    )
    assert degraded["status"] == "True"
    assert degraded["reason"] == reasons.APPLY_FAILED
    assert "refused-metrics" in degraded["message"]
    assert "exceeded quota" in degraded["message"]
    assert "next attempt in" in degraded["message"]

    watched_from = time.time()
    synced = sum(syncs(operator).values())
    wait_for(
        "twenty more syncs of the pool (one a second: the backstop)",
        lambda: sum(syncs(operator).values()) >= synced + 20,
        timeout=120,
    )
    sent = service_applies(crds, namespace, "refused-metrics", watched_from)
    # Every sync sent it before. With the delay doubling from 1 s, a window that starts
    # after the second failure holds at most five attempts even if it lasts two minutes.
    assert len(sent) <= 5, [e["requestReceivedTimestamp"] for e in sent]
    assert all(e["responseStatus"]["code"] == 403 for e in sent)

    crds.kubectl("delete", "resourcequota", "no-services", "-n", namespace)
    wait_for(
        "the Service at the next attempt, and Degraded cleared",
        lambda: (
            kubectl_json(crds, "service", "refused-metrics", "-n", namespace) is not None
            and condition(pool_status(crds, namespace, "refused"), "Degraded").get("status")
            == "False"
        ),
        timeout=180,
    )
