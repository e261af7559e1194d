"""WorkerPools against the real apiserver, controller-manager, node agent and PostgreSQL:
the operator runs as a process, workers run as processes behind real probes."""

from __future__ import annotations

import json
import os
import signal
import uuid
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
    event_reasons,
    events,
    is_ready,
    kubectl_json,
    pid_of,
    pods,
    pool_status,
    prepare_queue,
    queue_stats,
    ready_pods,
    secret,
    wide_table,
    workerpool,
)

pytestmark = pytest.mark.cluster

POOL = "emails"
QUEUE = "emails"
READY_TIMEOUT = 90.0


@pytest.fixture
def queue_dsn(postgres_dsn: str) -> str:
    prepare_queue(postgres_dsn)
    return postgres_dsn


def start_pool(
    cluster: LocalCluster, namespace: str, dsn: str, replicas: int = 2, **spec: Any
) -> None:
    apply(cluster, secret("queue-db", namespace, dsn))
    apply(
        cluster,
        workerpool(POOL, namespace, QUEUE, replicas={"min": replicas, "max": 4}, **spec),
    )
    wait_for(
        f"{replicas} ready worker pods",
        lambda: ready_pods(cluster, namespace, POOL, replicas),
        timeout=READY_TIMEOUT,
        describe=lambda: json.dumps(pool_status(cluster, namespace, POOL), indent=1),
    )


def healthy(cluster: LocalCluster, namespace: str, ready: int) -> dict[str, Any] | None:
    status = pool_status(cluster, namespace, POOL)
    if status.get("health") == "Healthy" and status.get("readyReplicas") == ready:
        return status
    return None


def deployment(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    return kubectl_json(cluster, "deployment", POOL, "-n", namespace)


def worker_env(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_pool_runs_ready_workers_that_drain_jobs(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    # Pod Security "restricted" is enforced: the pods exist only if the builder is compliant.
    crds.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # 40 jobs are one worker's worth at jobsPerWorker 40: the pool stays at its min of 2.
    start_pool(crds, namespace, queue_dsn, worker={"concurrency": 1}, scaling={"jobsPerWorker": 40})

    made = deployment(crds, namespace)
    assert made is not None
    (owner,) = made["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("WorkerPool", POOL, True)
    template = made["spec"]["template"]["spec"]
    assert template["terminationGracePeriodSeconds"] == 5 + 15
    (container,) = template["containers"]
    assert container["command"] == ["workerfleet-worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = worker_env(made)
    assert env["WORKERFLEET_DSN"] == {"secretKeyRef": {"name": "queue-db", "key": "dsn"}}
    assert env["POD_IP"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}
    service = kubectl_json(crds, "service", f"{POOL}-metrics", "-n", namespace)
    assert service is not None
    assert service["metadata"]["ownerReferences"][0]["name"] == POOL

    wait_for("a healthy pool", lambda: healthy(crds, namespace, 2), timeout=60)
    enqueue(queue_dsn, QUEUE, "sleep", {"seconds": 0.5}, count=40)
    busy = wait_for(
        "the table to show pending jobs",
        lambda: [r for r in wide_table(crds, namespace, "workerpools") if int(r["PENDING"] or 0)],
        timeout=30,
    )
    assert busy[0]["QUEUE"] == QUEUE
    assert busy[0]["DESIRED"] == "2"
    wait_for(
        "all 40 jobs done",
        lambda: (stats := queue_stats(queue_dsn, QUEUE)) is not None and stats.succeeded == 40,
        timeout=90,
    )
    drained = wait_for(
        "status to show the drained queue",
        lambda: (
            (s := pool_status(crds, namespace, POOL)).get("queue", {}).get("succeeded") == 40 and s
        ),
        timeout=30,
    )
    assert drained["queue"]["pending"] == 0
    assert drained["queue"]["throughputPerMinute"] >= 40
    assert drained["workers"]["online"] == 2
    assert condition(drained, "Available")["status"] == "True"
    assert condition(drained, "QueueReachable")["status"] == "True"
    assert condition(drained, "Degraded")["status"] == "False"
    assert condition(drained, "Paused")["status"] == "False"
    assert condition(drained, "Available")["observedGeneration"] == drained["observedGeneration"]

    (row,) = wide_table(crds, namespace, "workerpools")
    assert row["NAME"] == POOL
    assert (row["QUEUE"], row["DESIRED"], row["READY"]) == (QUEUE, "2", "2")
    assert (row["PENDING"], row["RUNNING"], row["OLDEST"]) == ("0", "0", "-")
    assert row["STATUS"] == "Healthy"
    assert (row["MIN"], row["MAX"], row["ONLINE"]) == ("2", "4", "2")
    assert int(row["PER MIN"]) >= 40
    listed = crds.kubectl("get", "workerfleet", "-n", namespace, "-o", "name").stdout.split()
    assert listed == [f"workerpool.workerfleet.dev/{POOL}"]

    code, body = operator.get("/healthz")
    assert code == 200, body
    code, metrics = operator.get("/metrics")
    assert code == 200
    assert (
        f'workerfleet_operator_pool_condition{{condition="Available",namespace="{namespace}",'
        f'pool="{POOL}",status="True"}} 1.0' in metrics
    )
    assert "workerfleet_operator_reconcile_duration_seconds_bucket" in metrics
    assert "workerfleet_operator_stats_queries_total" in metrics


def test_spec_changes_roll_deleted_deployment_returns_and_deletion_cascades(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    start_pool(crds, namespace, queue_dsn, replicas=1)
    first = deployment(crds, namespace)
    assert first is not None
    first_hash = first["metadata"]["annotations"]["workerfleet.dev/spec-hash"]

    crds.kubectl(
        "patch",
        "workerpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "image": "workerfleet-worker:test-2",
                    "worker": {"concurrency": 3},
                    "env": [{"name": "TEAM", "value": "mail"}],
                }
            }
        ),
    )

    def rolled() -> dict[str, Any] | None:
        current = deployment(crds, namespace)
        if current is None:
            return None
        hash_now = current["metadata"]["annotations"]["workerfleet.dev/spec-hash"]
        return current if hash_now != first_hash else None

    updated = wait_for("the Deployment to take the new spec", rolled, timeout=30)
    env = worker_env(updated)
    assert env["WORKERFLEET_CONCURRENCY"] == "3"
    assert env["TEAM"] == "mail"
    assert (
        updated["spec"]["template"]["spec"]["containers"][0]["image"] == "workerfleet-worker:test-2"
    )

    def new_pod_ready() -> bool:
        found = pods(crds, namespace, POOL)
        return (
            len(found) == 1
            and is_ready(found[0])
            and any(
                e.get("value") == "3"
                for e in found[0]["spec"]["containers"][0]["env"]
                if e["name"] == "WORKERFLEET_CONCURRENCY"
            )
        )

    wait_for("the rolled pod to be ready", new_pod_ready, timeout=READY_TIMEOUT)
    assert "DeploymentUpdated" in event_reasons(crds, namespace)

    # Edited by hand: the operator's fields come back.
    crds.kubectl("scale", "deployment", POOL, "-n", namespace, "--replicas=3")
    wait_for(
        "hand-scaled replicas to be restored",
        lambda: (d := deployment(crds, namespace)) is not None and d["spec"]["replicas"] == 1,
        timeout=30,
    )

    # Deleted by hand: a new one appears.
    crds.kubectl("delete", "deployment", POOL, "-n", namespace, "--wait=true")
    restored = wait_for(
        "the deleted Deployment to be recreated",
        lambda: (
            (d := deployment(crds, namespace)) is not None
            and d["metadata"]["uid"] != updated["metadata"]["uid"]
            and d
        ),
        timeout=30,
    )
    assert (
        restored["metadata"]["annotations"]["workerfleet.dev/spec-hash"]
        == (updated["metadata"]["annotations"]["workerfleet.dev/spec-hash"])
    )
    wait_for(
        "a DeploymentRestored event",
        lambda: "DeploymentRestored" in event_reasons(crds, namespace),
        timeout=30,
    )

    # Deleting the pool removes what it owned (the garbage collector follows owner refs).
    crds.kubectl("delete", "workerpool", POOL, "-n", namespace, "--wait=true", timeout=120)
    wait_for(
        "the Deployment, Service and pods to be garbage-collected",
        lambda: (
            deployment(crds, namespace) is None
            and kubectl_json(crds, "service", f"{POOL}-metrics", "-n", namespace) is None
            and not pods(crds, namespace, POOL)
        ),
        timeout=90,
    )


def test_killed_worker_degrades_the_pool_with_an_event(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    start_pool(crds, namespace, queue_dsn, replicas=2)
    wait_for("a healthy pool", lambda: healthy(crds, namespace, 2), timeout=60)
    victim = pods(crds, namespace, POOL)[0]
    pid = pid_of(victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    degraded = wait_for(
        "Degraded=True after the kill",
        lambda: (
            (s := pool_status(crds, namespace, POOL))
            and condition(s, "Degraded").get("status") == "True"
            and s
        ),
        timeout=20,
        interval=0.2,
    )
    assert condition(degraded, "Degraded")["reason"] == "WorkersNotReady"
    assert victim["metadata"]["name"] in condition(degraded, "Degraded")["message"]
    assert degraded["readyReplicas"] == 1
    assert condition(degraded, "Available")["status"] == "True"
    wait_for("a Degraded event", lambda: "Degraded" in event_reasons(crds, namespace), timeout=10)
    wait_for("the pool to recover", lambda: healthy(crds, namespace, 2), timeout=READY_TIMEOUT)
    wait_for("a Recovered event", lambda: "Recovered" in event_reasons(crds, namespace), timeout=10)


def test_missing_secret_is_reported_and_recovers(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    apply(crds, workerpool(POOL, namespace, QUEUE, replicas={"min": 1, "max": 2}))
    unreachable = wait_for(
        "QueueReachable=False",
        lambda: (
            (s := pool_status(crds, namespace, POOL))
            and condition(s, "QueueReachable").get("status") == "False"
            and s
        ),
        timeout=30,
    )
    reachable = condition(unreachable, "QueueReachable")
    assert reachable["reason"] == "SecretNotFound"
    assert f"Secret {namespace}/queue-db not found" in reachable["message"]
    assert unreachable["health"] == "QueueUnreachable"
    wait_for(
        "a QueueUnreachable event",
        lambda: "QueueUnreachable" in event_reasons(crds, namespace),
        timeout=10,
    )

    apply(crds, secret("queue-db", namespace, queue_dsn))
    wait_for(
        "QueueReachable=True once the Secret exists",
        lambda: (
            condition(pool_status(crds, namespace, POOL), "QueueReachable").get("status") == "True"
        ),
        timeout=60,
    )
    wait_for("a healthy pool", lambda: healthy(crds, namespace, 1), timeout=READY_TIMEOUT)
    assert "QueueReachable" in event_reasons(crds, namespace)


def test_no_secret_value_in_logs_status_or_events(
    crds: LocalCluster,
    namespace: str,
    operator: OperatorProcess,
    postgres_server: PostgresServer,
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    database = f"db_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f'CREATE DATABASE "{database}" OWNER {role}')
    where = f"{postgres_server.host}:{postgres_server.port}/{database}"
    good = f"postgresql://{role}:{password}@{where}"
    bad = good.replace(password, wrong)
    prepare_queue(good)

    start_pool(crds, namespace, good, replicas=1)
    apply(crds, secret("bad-db", namespace, bad))
    apply(
        crds,
        workerpool(
            "broken",
            namespace,
            QUEUE,
            replicas={"min": 1, "max": 1},
            database={"secretRef": {"name": "bad-db"}},
        ),
    )
    broken = wait_for(
        "the broken pool's QueueReachable=False",
        lambda: (
            (s := pool_status(crds, namespace, "broken"))
            and condition(s, "QueueReachable").get("status") == "False"
            and s
        ),
        timeout=30,
    )
    assert condition(broken, "QueueReachable")["reason"] == "DatabaseUnreachable"
    assert "password authentication failed" in condition(broken, "QueueReachable")["message"]
    wait_for("a healthy pool", lambda: healthy(crds, namespace, 1), timeout=60)

    texts = {
        "operator log": operator.logs(),
        "statuses": json.dumps(kubectl_json(crds, "workerpools", "-n", namespace)),
        "events": json.dumps(events(crds, namespace)),
        "all events": crds.kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
    }
    for log in sorted(crds.logs_dir.glob(f"{namespace}_*.log")):
        texts[log.name] = log.read_text(errors="replace")
    assert any(name.endswith("_worker.log") for name in texts)
    for name, text in texts.items():
        for value in (password, wrong):
            assert value not in text, f"a password appears in {name}"


def test_spec_problem_the_schema_cannot_see_names_the_field(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    # Every rule of the pool's own fields is refused at admission (tests/spec_corpus.py);
    # what is left is the pod template the user overrides, which only the Deployment's
    # own validation judges.
    apply(crds, secret("queue-db", namespace, queue_dsn))
    apply(
        crds,
        workerpool(
            POOL,
            namespace,
            QUEUE,
            template={"spec": {"nodeSelector": {"disk type": "ssd"}}},
        ),
    )
    status = wait_for(
        "Degraded=True InvalidSpec",
        lambda: (
            (s := pool_status(crds, namespace, POOL))
            and condition(s, "Degraded").get("reason") == "InvalidSpec"
            and s
        ),
        timeout=30,
    )
    message = condition(status, "Degraded")["message"]
    assert "spec.template.spec.nodeSelector" in message
    assert "disk type" in message
    assert status["health"] == "InvalidSpec"
    assert deployment(crds, namespace) is None
    wait_for(
        "kopf to record the permanent failure",
        lambda: "failed permanently" in operator.logs(),
        timeout=10,
    )
    crds.kubectl(
        "patch",
        "workerpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"template": {"spec": {"nodeSelector": None}}}}),
    )
    wait_for("the fixed pool to run", lambda: healthy(crds, namespace, 2), timeout=READY_TIMEOUT)


def test_paused_pool_is_left_alone_and_kubectl_scale_pins_it(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, queue_dsn: str
) -> None:
    start_pool(crds, namespace, queue_dsn, replicas=1)
    crds.kubectl("scale", "workerpool", POOL, "-n", namespace, "--replicas=2")
    pool = kubectl_json(crds, "workerpool", POOL, "-n", namespace)
    assert pool is not None
    assert pool["spec"]["replicas"]["override"] == 2
    wait_for(
        "two ready workers", lambda: ready_pods(crds, namespace, POOL, 2), timeout=READY_TIMEOUT
    )
    scale = json.loads(
        crds.kubectl(
            "get", "workerpool", POOL, "-n", namespace, "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 2
    wait_for(
        "the scale subresource to see two replicas",
        lambda: (
            json.loads(
                crds.kubectl(
                    "get", "workerpool", POOL, "-n", namespace, "--subresource=scale", "-o", "json"
                ).stdout
            )["status"].get("replicas")
            == 2
        ),
        timeout=30,
    )

    crds.kubectl(
        "patch",
        "workerpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"paused": True}}),
    )
    wait_for(
        "Paused=True",
        lambda: condition(pool_status(crds, namespace, POOL), "Paused").get("status") == "True",
        timeout=30,
    )
    crds.kubectl("scale", "deployment", POOL, "-n", namespace, "--replicas=3")
    wait_for(
        "three ready workers", lambda: ready_pods(crds, namespace, POOL, 3), timeout=READY_TIMEOUT
    )
    current = deployment(crds, namespace)
    assert current is not None
    assert current["spec"]["replicas"] == 3  # left alone while paused
    assert pool_status(crds, namespace, POOL)["health"] == "Paused"

    crds.kubectl(
        "patch",
        "workerpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"paused": False}}),
    )
    wait_for(
        "the override to apply again after resuming",
        lambda: (d := deployment(crds, namespace)) is not None and d["spec"]["replicas"] == 2,
        timeout=30,
    )
    assert "Resumed" in event_reasons(crds, namespace)
