"""The worker's HTTP surface and start-up checks, on real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from localcluster.postgres import PASSWORD, PostgresServer
from tests.integration.worker_runtime.support import (
    WORKER_BINARY,
    Worker,
    eventually,
    wait_ready,
)
from workerfleet.worker import migrations
from workerfleet.worker.repository import Repository

QUEUE = "runtime"


async def test_health_has_the_seed_000_shape_and_metrics_parse(
    repository: Repository, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn, concurrency=2, extra_env={"WORKERFLEET_SHUTDOWN_GRACE": "1s"})
    worker.start()
    workers.append(worker)
    await wait_ready(worker)
    ids = [await repository.enqueue(QUEUE, "echo", {"n": n}) for n in range(3)]
    await repository.enqueue(QUEUE, "sleep", {"seconds": 30})
    await repository.enqueue(QUEUE, "echo", {}, delay_seconds=3600)  # scheduled

    def one_running() -> bool:
        _, body = worker.get_json("/health")
        return len(body["worker"]["currentJobs"]) == 1 and body["worker"]["jobsProcessed"] == 3

    await eventually(one_running, "three jobs done and one running")

    def stats_caught_up() -> bool:  # queue stats are cached for a few seconds
        _, body = worker.get_json("/health")
        counts = {row["status"]: row["count"] for row in body["jobs"]["stats"]}
        return counts.get("succeeded") == 3 and counts.get("running") == 1

    await eventually(stats_caught_up, "the queue stats to show the finished jobs")
    code, body = worker.get_json("/health")
    assert code == 200
    assert body["status"] == "healthy"
    assert set(body) >= {"status", "timestamp", "uptime", "worker", "database", "jobs", "memory",
                         "environment"}  # fmt: skip
    info = body["worker"]
    assert info["status"] == "running"
    assert info["isShuttingDown"] is False
    assert info["currentJob"]["task"] == "sleep"
    assert info["jobsProcessed"] == 3
    assert info["jobs"]["succeeded"] == 3
    assert info["memoryUsage"]["rss"] > 0
    assert info["config"]["concurrency"] == 2
    assert info["queues"] == [QUEUE]
    assert body["database"]["connected"] is True
    assert body["database"]["lastCheck"].endswith("Z")
    counts = {row["status"]: row["count"] for row in body["jobs"]["stats"]}
    assert counts["succeeded"] == 3
    assert counts["running"] == 1
    assert counts["scheduled"] == 1
    assert body["jobs"]["lastCheck"] is not None
    raw = worker.get("/health")[1].decode()
    assert PASSWORD not in raw
    assert "***" in raw

    assert worker.get("/healthz")[0] == 200
    assert worker.get("/readyz")[0] == 200
    code, metrics_body = worker.get("/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics_body.decode())}
    for name in (
        "workerfleet_worker_jobs_started",
        "workerfleet_worker_jobs_succeeded",
        "workerfleet_worker_jobs_fenced",
        "workerfleet_worker_job_duration_seconds",
        "workerfleet_worker_job_queue_wait_seconds",
        "workerfleet_worker_claim_duration_seconds",
        "workerfleet_worker_heartbeat_age_seconds",
        "workerfleet_worker_current_jobs",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
    assert worker.metric("workerfleet_worker_jobs_succeeded_total", queue=QUEUE, task="echo") == 3
    assert worker.metric("workerfleet_worker_current_jobs") == 1
    assert worker.metric("workerfleet_worker_job_queue_wait_seconds_count", task="echo") == 3
    assert worker.metric("workerfleet_worker_heartbeat_age_seconds") < 60
    # The periodic health log line, one JSON event per line.
    health_lines = await eventually(
        lambda: [e for e in worker.log_events() if e["message"] == "health"],
        "a periodic health log line",
    )
    assert health_lines[-1]["status"] == "healthy"
    assert "memory_rss_mb" in health_lines[-1]
    assert all(PASSWORD not in line for line in worker.logs().splitlines())
    assert len(ids) == 3


async def test_readyz_follows_the_database_down_and_back_without_a_restart(
    tmp_path: Path, workers: list[Worker]
) -> None:
    # A server of our own: stopping the session's server would break other tests.
    server = PostgresServer(tmp_path / "pg")
    server.start()
    try:
        dsn = server.create_database()
        await migrations.migrate(dsn)
        worker = Worker(dsn, handlers="workerfleet.worker.demo_handlers").start()
        workers.append(worker)
        await wait_ready(worker)
        server.stop()
        await eventually(lambda: worker.probe("/readyz") == 503, "readiness to drop")
        code, body = worker.get_json("/health")
        assert code == 503
        assert body["status"] == "unhealthy"
        assert body["database"]["connected"] is False
        assert worker.probe("/healthz") == 200  # alive: a restart would not help
        assert worker.process is not None
        assert worker.process.poll() is None
        await asyncio.sleep(1.0)  # several failed heartbeats and claims
        assert worker.process.poll() is None
        server.start()
        await eventually(lambda: worker.probe("/readyz") == 200, "readiness to return", 60)
        # LISTEN reconnects too: the report is healthy again, not degraded to polling.
        await eventually(
            lambda: worker.get_json("/health")[1]["status"] == "healthy", "healthy again", 60
        )
        # And it works again: a job enqueued now gets done by the same process.
        from workerfleet.worker.connector import Connector

        connector = await Connector.open(dsn)
        try:
            repository = Repository(connector)
            job_id = await repository.enqueue(QUEUE, "echo", {"after": "outage"})

            async def done() -> bool:
                job = await repository.get_job(job_id)
                return job is not None and job.state == "succeeded"

            await eventually(done, "a job to run after the outage")
        finally:
            await connector.close()
        assert worker.process.poll() is None
    finally:
        server.destroy()


def _run_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "WORKERFLEET_HEALTH_HOST": "127.0.0.1"}
    return subprocess.run(
        [str(WORKER_BINARY)], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


VALID = {
    "WORKERFLEET_DSN": f"postgresql://workerfleet:{PASSWORD}@127.0.0.1:1/nowhere",
    "WORKERFLEET_QUEUES": "runtime",
    "WORKERFLEET_HANDLERS": "workerfleet.worker.demo_handlers",
}


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"WORKERFLEET_DSN": ""}, "WORKERFLEET_DSN"),
        ({"WORKERFLEET_CONCURRENCY": "lots"}, "WORKERFLEET_CONCURRENCY"),
        ({"WORKERFLEET_POLL_INTERVAL": "soon"}, "WORKERFLEET_POLL_INTERVAL"),
        ({"WORKERFLEET_QUEUES": "Bad Queue"}, "WORKERFLEET_QUEUES"),
        ({"WORKERFLEET_SHUTDOWN_GRACE": "-5s"}, "WORKERFLEET_SHUTDOWN_GRACE"),
        ({"WORKERFLEET_HANDLERS": "acme.missing_module"}, "WORKERFLEET_HANDLERS"),
    ],
)
def test_invalid_environment_exits_1_naming_the_variable(
    changes: dict[str, str], variable: str
) -> None:
    env = {key: value for key, value in {**VALID, **changes}.items() if value}
    result = _run_with(env)
    assert result.returncode == 1
    assert variable in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_a_taken_probe_port_exits_1(workers: list[Worker]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _run_with({**VALID, "WORKERFLEET_HEALTH_PORT": str(port)})
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any("WORKERFLEET_HEALTH_PORT" in event["message"] for event in events)


async def test_the_worker_migrates_at_start_unless_told_not_to(
    postgres_server: PostgresServer, workers: list[Worker]
) -> None:
    fresh = postgres_server.create_database()
    worker = Worker(fresh, handlers="workerfleet.worker.demo_handlers").start()
    workers.append(worker)
    await wait_ready(worker)
    versions = [e for e in worker.log_events() if e["message"] == "migrations applied"]
    assert versions
    assert versions[0]["versions"]

    unmigrated = postgres_server.create_database()
    refused = Worker(
        unmigrated,
        handlers="workerfleet.worker.demo_handlers",
        extra_env={"WORKERFLEET_MIGRATE": "false"},
    ).start()
    workers.append(refused)
    assert refused.wait_exit() == 1
    errors = [e for e in refused.log_events() if e["level"] == "ERROR"]
    assert any("WORKERFLEET_MIGRATE" in e["message"] for e in errors)
