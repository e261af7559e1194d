"""The monitoring example on the local cluster: a WorkerPool from examples/monitoring whose
schedules enqueue seed 002's HTTP and SSL-expiry checks every minute, run by its worker
against loopback servers (TLS with a certificate made here). Then the operator is stopped
across a run: at its restart the run past startingDeadline is skipped, counted and told
as an Event, the other schedule's run is enqueued late, once. Deleting the pool removes
its schedules from the database.

Each run's enqueue lag (scheduled time to the job's insertion, by the database's clock) is
printed for the record, not asserted."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.loopback import LOOPBACK, free_port
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.loopback_servers import (
    CERT_DAYS,
    Server,
    http_server,
    self_signed_certificate,
    server_tls,
)
from tests.operator_support import (
    apply,
    condition,
    events,
    pool_status,
    prepare_queue,
    ready_pods,
    secret,
    workerpool,
)
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import Job, ScheduleRow, ScheduleRun
from workerfleet.worker.repository import Repository

pytestmark = pytest.mark.cluster

EXAMPLE = REPO_ROOT / "examples" / "monitoring"
POOL = "monitoring"
READY_TIMEOUT = 90.0
# The first runs come at the next minute after the pool is up.
FIRST_RUN_TIMEOUT = 150.0
DEADLINE_SECONDS = 10
# How long after a run's time the operator comes back: past the deadline.
RESTART_LATE_SECONDS = DEADLINE_SECONDS + 8


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server, Path]]:
    cert, key = self_signed_certificate(tmp_path)
    with http_server() as plain, http_server(server_tls(cert, key)) as tls:
        yield plain, tls, cert


def example_pool(namespace: str, plain: Server, tls: Server, cert: Path) -> dict[str, Any]:
    """examples/monitoring/workerpool.yaml, pointed at the loopback servers."""
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLE / "workerpool.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    spec = manifest["spec"]
    spec["replicas"] = {"min": 1, "max": 1}
    spec["worker"].update({"heartbeatInterval": "1s", "pollInterval": "500ms"})
    spec["worker"]["shutdownGracePeriod"] = "5s"
    # The node agent runs the image's command from this checkout: the module is found here.
    spec["env"] = [{"name": "PYTHONPATH", "value": str(EXAMPLE)}]
    schedules = {entry["name"]: entry for entry in spec["schedules"]}
    schedules["http-check"]["startingDeadline"] = f"{DEADLINE_SECONDS}s"
    schedules["http-check"]["payload"] = {
        "targets": [
            {"url": plain.url("/health")},
            {"url": f"http://{LOOPBACK}:{free_port()}/health", "timeoutSeconds": 5},
        ]
    }
    schedules["ssl-expiry"]["payload"] = {
        "targets": [{"host": LOOPBACK, "port": tls.port, "caFile": str(cert)}]
    }
    return manifest


def in_database(dsn: str, read: Any) -> Any:
    async def go() -> Any:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            return await read(Repository(connector))

    return asyncio.run(go())


def finished_jobs(dsn: str, task: str) -> list[Job]:
    jobs: list[Job] = in_database(dsn, lambda repo: repo.list_jobs(task=task, limit=100))
    return [job for job in jobs if job.state in ("succeeded", "dead")]


def runs(dsn: str, namespace: str, schedule: str) -> list[ScheduleRun]:
    found: list[ScheduleRun] = in_database(
        dsn, lambda repo: repo.schedule_runs(f"{namespace}/{POOL}", schedule)
    )
    return found


def schedule_rows(dsn: str, namespace: str) -> dict[str, ScheduleRow]:
    rows: list[ScheduleRow] = in_database(
        dsn, lambda repo: repo.list_schedules(f"{namespace}/{POOL}")
    )
    return {row.name: row for row in rows}


def print_lags(label: str, found: list[ScheduleRun]) -> None:
    for run in sorted(found, key=lambda r: r.scheduled_at):
        lag = (run.enqueued_at - run.scheduled_at).total_seconds()
        print(f"[{label}] run {run.scheduled_at:%H:%M:%S} enqueued {lag:+.3f}s after its time")


def test_the_monitoring_example_runs_every_minute_once_and_tells_a_missed_run(
    crds: LocalCluster,
    namespace: str,
    operator: OperatorProcess,
    postgres_dsn: str,
    servers: tuple[Server, Server, Path],
    tmp_path: Path,
) -> None:
    plain, tls, cert = servers
    prepare_queue(postgres_dsn)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    apply(crds, example_pool(namespace, plain, tls, cert))
    wait_for(
        "the monitoring worker",
        lambda: ready_pods(crds, namespace, POOL, 1),
        timeout=READY_TIMEOUT,
        describe=lambda: json.dumps(pool_status(crds, namespace, POOL), indent=1),
    )

    (http_job,) = wait_for(
        "the first http_check to run",
        lambda: finished_jobs(postgres_dsn, "http_check"),
        timeout=FIRST_RUN_TIMEOUT,
    )
    (ssl_job,) = wait_for(
        "the first ssl_expiry_check to run",
        lambda: finished_jobs(postgres_dsn, "ssl_expiry_check"),
        timeout=30,
    )
    assert http_job.state == "succeeded", http_job.last_error
    up, refused = http_job.result["results"]
    assert (up["ok"], up["status"]) == (True, 200)
    assert (refused["ok"], refused["status"]) == (False, None)
    assert ssl_job.state == "succeeded", ssl_job.last_error
    (certificate,) = ssl_job.result["results"]
    assert certificate["valid"] is True
    assert CERT_DAYS - 1 < certificate["daysLeft"] <= CERT_DAYS

    # Exactly once: one run row per job, the run's time on a minute.
    (http_run,) = runs(postgres_dsn, namespace, "http-check")
    (ssl_run,) = runs(postgres_dsn, namespace, "ssl-expiry")
    assert (http_run.job_id, ssl_run.job_id) == (http_job.id, ssl_job.id)
    assert http_run.scheduled_at.second == 0
    assert ssl_run.scheduled_at == http_run.scheduled_at
    print_lags("http-check", [http_run])
    print_lags("ssl-expiry", [ssl_run])

    def reported() -> dict[str, dict[str, Any]] | None:
        listed = pool_status(crds, namespace, POOL).get("schedules") or []
        by_name = {entry["name"]: entry for entry in listed}
        done = all(entry.get("lastJobState") == "succeeded" for entry in by_name.values())
        return by_name if len(by_name) == 2 and done else None

    status = wait_for("status.schedules to show both runs done", reported, timeout=30)
    first_time = http_run.scheduled_at
    for name, job in (("http-check", http_job), ("ssl-expiry", ssl_job)):
        entry = status[name]
        assert entry["lastJobId"] == job.id
        assert entry["lastScheduleTime"] == f"{first_time:%Y-%m-%dT%H:%M:%SZ}"
        assert entry["nextRunTime"] == f"{first_time + timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ}"
        assert entry["missedRuns"] == 0
    described = crds.kubectl("describe", "workerpool", POOL, "-n", namespace).stdout
    assert "Schedules:" in described
    assert re.search(r"Last Job State:\s+succeeded", described)

    # The operator goes away across the next run and comes back past its deadline.
    operator.stop()
    marks = schedule_rows(postgres_dsn, namespace)
    last = max(row.last_scheduled_at for row in marks.values() if row.last_scheduled_at)
    missed_time = last + timedelta(minutes=1)
    back_at = missed_time + timedelta(seconds=RESTART_LATE_SECONDS)
    time.sleep(max(0.0, (back_at - datetime.now(UTC)).total_seconds()))
    restarted = OperatorProcess(crds.kubeconfig, namespace, tmp_path / "operator-restarted.log")
    try:
        restarted.wait_ready()
        missed = wait_for(
            "a MissedSchedule event",
            lambda: [e for e in events(crds, namespace) if e.get("reason") == "MissedSchedule"],
            timeout=60,
        )
        assert len(missed) == 1
        assert missed[0]["type"] == "Warning"
        assert missed[0]["message"].startswith("schedule http-check: 1 run missed")
        assert "past startingDeadline (10s)" in missed[0]["message"]

        late = wait_for(
            "ssl-expiry's late run",
            lambda: [
                r
                for r in runs(postgres_dsn, namespace, "ssl-expiry")
                if r.scheduled_at == missed_time
            ],
            timeout=30,
        )
        print_lags("ssl-expiry after the restart", late)
        assert not [
            r for r in runs(postgres_dsn, namespace, "http-check") if r.scheduled_at == missed_time
        ]
        counted = wait_for(
            "status.schedules to count the missed run",
            lambda: (
                (
                    s := {
                        e["name"]: e
                        for e in pool_status(crds, namespace, POOL).get("schedules") or []
                    }
                )
                and s["http-check"].get("missedRuns") == 1
                and s
            ),
            timeout=30,
        )
        assert counted["http-check"]["lastMissedTime"] == f"{missed_time:%Y-%m-%dT%H:%M:%SZ}"
        assert counted["ssl-expiry"]["missedRuns"] == 0

        # A deleted pool's schedules leave the database with it.
        crds.kubectl("delete", "workerpool", POOL, "-n", namespace, "--wait=true", timeout=60)
        wait_for(
            "the deleted pool's schedules to be removed",
            lambda: schedule_rows(postgres_dsn, namespace) == {},
            timeout=30,
        )
    finally:
        code = restarted.stop()
        print(f"--- restarted operator log (exit {code}) ---\n{restarted.logs()[-20000:]}")


def test_a_cron_the_api_server_admits_but_cannot_run_is_reported_naming_the_field(
    crds: LocalCluster, namespace: str, operator: OperatorProcess, postgres_dsn: str
) -> None:
    # CEL checks the shape only (five fields); the operator's full check finds the minute.
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    manifest = workerpool(
        POOL,
        namespace,
        "monitoring",
        schedules=[{"name": "http-check", "cron": "61 * * * *", "task": "http_check"}],
    )
    apply(crds, manifest)
    status = wait_for(
        "Degraded=True InvalidSpec",
        lambda: (
            (s := pool_status(crds, namespace, POOL))
            and condition(s, "Degraded").get("reason") == "InvalidSpec"
            and s
        ),
        timeout=30,
    )
    assert condition(status, "Degraded")["message"] == (
        "spec.schedules[0].cron: '61 * * * *': the minute field is not valid (it takes 0-59)"
    )
    assert status["health"] == "InvalidSpec"
