"""The ``workerfleet`` ops CLI, run as a real subprocess against the real database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from localcluster.loopback import free_port
from localcluster.postgres import PASSWORD
from workerfleet.worker import schedules
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import ScheduleDefinition
from workerfleet.worker.repository import Repository

WORKERFLEET = Path(sys.executable).with_name("workerfleet")
CLI_TIMEOUT_SECONDS = 60


def run(
    *args: str, dsn: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "WORKERFLEET_DSN"}
    environment.update(env or {})
    command = [str(WORKERFLEET), *(["--dsn", dsn] if dsn else []), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=environment,
        timeout=CLI_TIMEOUT_SECONDS,
        cwd="/",
    )


@pytest.fixture
def dsn(postgres_dsn: str) -> str:
    migrated = run("db", "migrate", dsn=postgres_dsn)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied 0001")
    return postgres_dsn


def test_migrate_twice_and_via_environment(dsn: str) -> None:
    again = run("db", "migrate", env={"WORKERFLEET_DSN": dsn})
    assert (again.returncode, again.stdout.strip()) == (0, "schema up to date")


async def test_db_recount_repairs_drifted_counters(dsn: str) -> None:
    assert run("enqueue", "bulk", "noop", "--count", "5", dsn=dsn).returncode == 0
    agreed = run("db", "recount", dsn=dsn)
    assert (agreed.returncode, agreed.stdout.strip()) == (
        0,
        "counters agreed with the jobs table (5 jobs)",
    )
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("DELETE FROM workerfleet.jobs WHERE id <= 2")
    finally:
        await connection.close()
    before = json.loads(run("stats", "--json", dsn=dsn).stdout)["queues"]
    assert before[0]["pending"] == 5  # the counters missed the delete

    repaired = run("db", "recount", dsn=dsn)
    assert repaired.returncode == 0, repaired.stderr
    lines = repaired.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "STATE", "JOBS", "COUNTERS", "WERE", "OFF", "BY"]
    assert lines[1].split() == ["bulk", "pending", "3", "+2"]
    assert lines[-1] == "counters rebuilt from 3 jobs"
    after = json.loads(run("stats", "--json", dsn=dsn).stdout)["queues"]
    assert after[0]["pending"] == 3
    document = json.loads(run("db", "recount", "--json", dsn=dsn).stdout)
    assert document == [{"counted": 3, "drift": 0, "queue": "bulk", "state": "pending"}]


def test_enqueue_options_reach_the_job(dsn: str) -> None:
    created = run(
        "enqueue", "emails", "send",
        "--payload", '{"to": "a@example.test"}',
        "--priority", "7", "--delay", "10m", "--max-attempts", "3", "--unique-key", "welcome-1",
        dsn=dsn,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout)
    shown = run("jobs", "show", str(job_id), "--json", dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert (job["queue"], job["task"], job["priority"], job["max_attempts"]) == (
        "emails",
        "send",
        7,
        3,
    )
    assert (job["payload"], job["unique_key"], job["state"]) == (
        {"to": "a@example.test"},
        "welcome-1",
        "pending",
    )
    duplicate = run("enqueue", "emails", "send", "--unique-key", "welcome-1", dsn=dsn)
    assert (duplicate.returncode, int(duplicate.stdout)) == (0, job_id)

    at = run("enqueue", "emails", "send", "--run-at", "2031-05-01T09:00:00Z", "--json", dsn=dsn)
    [at_id] = json.loads(at.stdout)["ids"]
    scheduled = json.loads(run("jobs", "show", str(at_id), "--json", dsn=dsn).stdout)
    assert scheduled["run_at"] == "2031-05-01T09:00:00+00:00"


def test_enqueue_count_then_stats_table_and_json(dsn: str) -> None:
    many = run("enqueue", "bulk", "noop", "--count", "1500", dsn=dsn)
    assert many.returncode == 0, many.stderr
    assert many.stdout.startswith("enqueued 1500 jobs on bulk")
    run("enqueue", "other", "noop", "--delay", "1h", dsn=dsn)

    table = run("stats", dsn=dsn)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("QUEUE"))
    assert header.split() == [
        "QUEUE", "PENDING", "SCHEDULED", "RUNNING", "SUCCEEDED", "DEAD", "CANCELLED",
        "OLDEST", "DONE/MIN",
    ]  # fmt: skip
    bulk = next(line for line in lines if line.startswith("bulk "))
    assert bulk.split()[1:7] == ["1500", "0", "0", "0", "0", "0"]
    other = next(line for line in lines if line.startswith("other "))
    assert other.split()[1:3] == ["0", "1"]

    document = json.loads(run("stats", "--json", dsn=dsn).stdout)
    by_queue = {row["queue"]: row for row in document["queues"]}
    assert by_queue["bulk"]["pending"] == 1500
    assert by_queue["other"]["scheduled"] == 1


async def test_jobs_list_show_retry_cancel(dsn: str) -> None:
    connector = await Connector.open(dsn)
    try:
        repo = Repository(connector)
        dead_id = await repo.enqueue("work", "explode", max_attempts=1)
        [job] = await repo.claim("w1", ["work"], 1, 30)
        assert await repo.fail(job.ref, "RuntimeError: kaboom", "Traceback (most recent)", 0)
        pending_id = await repo.enqueue("work", "fine")
        await repo.enqueue("elsewhere", "fine")
    finally:
        await connector.close()

    listed = run("jobs", "list", "--queue", "work", "--state", "dead", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [str(dead_id)]
    assert "RuntimeError: kaboom" in rows[0]
    as_json = json.loads(
        run("jobs", "list", "--task", "fine", "--limit", "1", "--json", dsn=dsn).stdout
    )
    assert len(as_json) == 1
    assert as_json[0]["task"] == "fine"

    shown = run("jobs", "show", str(dead_id), dsn=dsn)
    assert "last_error: RuntimeError: kaboom" in shown.stdout
    assert "state: dead" in shown.stdout

    assert run("jobs", "retry", str(dead_id), dsn=dsn).returncode == 0
    retried = json.loads(run("jobs", "show", str(dead_id), "--json", dsn=dsn).stdout)
    assert (retried["state"], retried["attempt"]) == ("pending", 0)
    not_dead = run("jobs", "retry", str(pending_id), dsn=dsn)
    assert not_dead.returncode == 1
    assert "only dead or cancelled jobs retry" in not_dead.stderr

    assert run("jobs", "cancel", str(pending_id), dsn=dsn).returncode == 0
    twice = run("jobs", "cancel", str(pending_id), dsn=dsn)
    assert (twice.returncode, "cancelled" in twice.stderr) == (1, True)
    missing = run("jobs", "show", "999999", dsn=dsn)
    assert (missing.returncode, "no job with id 999999" in missing.stderr) == (1, True)


async def test_workers_list(dsn: str) -> None:
    connector = await Connector.open(dsn)
    try:
        repo = Repository(connector)
        await repo.register_worker("pod-a-uid-1", "emails", ["emails", "urgent"], "pod-a", "1.2")
        await repo.set_worker_state("pod-a-uid-1", "draining")
    finally:
        await connector.close()
    listed = run("workers", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    [row] = listed.stdout.splitlines()[1:]
    assert row.split()[:4] == ["pod-a-uid-1", "emails", "draining", "emails,urgent"]
    [worker] = json.loads(run("workers", "list", "--pool", "emails", "--json", dsn=dsn).stdout)
    assert worker["queues"] == ["emails", "urgent"]
    assert json.loads(run("workers", "list", "--pool", "none", "--json", dsn=dsn).stdout) == []


def test_bad_input_exits_1_naming_the_option(dsn: str) -> None:
    cases = [
        (["enqueue", "Not-Valid", "t"], "QUEUE: invalid queue name"),
        (["enqueue", "q", "t", "--payload", "{oops"], "--payload: not valid JSON"),
        (["enqueue", "q", "t", "--delay", "soon"], "--delay: invalid duration"),
        (["enqueue", "q", "t", "--run-at", "2030-01-01T00:00:00"], "--run-at:"),
        (["enqueue", "q", "t", "--max-attempts", "0"], "--max-attempts:"),
        (["enqueue", "q", "t", "--count", "2", "--unique-key", "k"], "--count:"),
        (["jobs", "list", "--queue", "UPPER"], "--queue: invalid queue name"),
        (["jobs", "prune", "--older-than", "forever"], "--older-than:"),
    ]
    for args, message in cases:
        result = run(*args, dsn=dsn)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert json.loads(run("stats", "--json", dsn=dsn).stdout)["queues"] == []


def test_usage_errors_exit_2_and_help_documents_exit_codes() -> None:
    assert run("frobnicate").returncode == 2
    assert run("enqueue", "q").returncode == 2
    assert run("enqueue", "q", "t", "--priority", "high").returncode == 2
    assert (
        run("enqueue", "q", "t", "--delay", "1s", "--run-at", "2030-01-01T00:00Z").returncode == 2
    )
    helped = run("--help")
    assert helped.returncode == 0
    for line in ("1  bad input", "2  usage error", "3  database unreachable"):
        assert line in helped.stdout


def test_database_problems_exit_3_or_4_without_printing_the_password(postgres_dsn: str) -> None:
    port = free_port()
    unreachable = run("stats", dsn=f"postgresql://someone:{PASSWORD}@127.0.0.1:{port}/db")
    assert unreachable.returncode == 3
    assert "cannot connect" in unreachable.stderr
    assert PASSWORD not in unreachable.stderr + unreachable.stdout

    wrong_password = postgres_dsn.replace(PASSWORD, "not-the-password")
    refused = run("stats", dsn=wrong_password)
    assert refused.returncode == 3
    assert "not-the-password" not in refused.stderr

    unmigrated = run("stats", dsn=postgres_dsn)
    assert unmigrated.returncode == 4
    assert "workerfleet db migrate" in unmigrated.stderr
    assert PASSWORD not in unmigrated.stderr

    nothing = run("stats")
    assert nothing.returncode == 1
    assert "--dsn" in nothing.stderr


def test_stats_watch_refreshes_until_interrupted(dsn: str) -> None:
    run("enqueue", "watched", "t", dsn=dsn)
    environment = {key: value for key, value in os.environ.items() if key != "WORKERFLEET_DSN"}
    watcher = subprocess.Popen(
        [str(WORKERFLEET), "--dsn", dsn, "stats", "--watch", "100ms", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd="/",
    )
    try:
        assert watcher.stdout is not None
        documents = [json.loads(watcher.stdout.readline()) for _ in range(3)]
    finally:
        watcher.send_signal(signal.SIGINT)
        _, stderr = watcher.communicate(timeout=CLI_TIMEOUT_SECONDS)
    assert watcher.returncode == 0, stderr
    assert [doc["queues"][0]["queue"] for doc in documents] == ["watched"] * 3
    assert len({doc["time"] for doc in documents}) == 3


def test_recover_and_prune(dsn: str) -> None:
    recovered = run("recover", "--dead-after", "2m", dsn=dsn)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.startswith("dead workers: 0")
    pruned = run("jobs", "prune", "--older-than", "1d", "--state", "dead", dsn=dsn)
    assert (pruned.returncode, pruned.stdout.split()[:2]) == (0, ["deleted", "0"])


def test_schedules_list_shows_each_schedule_with_its_next_and_last_run(dsn: str) -> None:
    async def declare() -> None:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            repo = Repository(connector)
            now = datetime.now(UTC)
            tick = ScheduleDefinition("tick", "reports", "tick", "* * * * *")
            await schedules.register(repo, "team/reports", "operator", [tick], now)
            nightly = ScheduleDefinition(
                "nightly", "reports", "report", "0 3 * * *", "Europe/Riga", suspended=True
            )
            await schedules.register(repo, "default", "worker", [nightly], now)
            await schedules.run_due(repo, "team/reports", "operator", now + timedelta(minutes=1))

    asyncio.run(declare())
    listed = run("schedules", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    header, first, second = listed.stdout.splitlines()
    assert header.split()[:4] == ["POOL", "NAME", "SOURCE", "SCHEDULE"]
    assert first.split()[:3] == ["default", "nightly", "worker"]
    assert "suspended" in first
    assert second.split()[:3] == ["team/reports", "tick", "operator"]
    assert " pending " in second + " "  # its last run's job
    one_pool = run("schedules", "list", "--pool", "team/reports", "--json", dsn=dsn)
    (document,) = json.loads(one_pool.stdout)
    assert (document["name"], document["cron"], document["last_job_state"]) == (
        "tick",
        "* * * * *",
        "pending",
    )
    assert document["next_run"] is not None
    empty = run("schedules", "list", "--pool", "nobody", dsn=dsn)
    assert empty.stdout.strip() == "no schedules"
