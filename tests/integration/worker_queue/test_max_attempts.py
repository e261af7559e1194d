"""max_attempts against the real PostgreSQL: a job enqueued without one stores NULL, the
worker that first claims it gives it its own setting, and a running job always has one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from workerfleet.worker import migrations
from workerfleet.worker.client import enqueue_on
from workerfleet.worker.connector import Connector, connect
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository

LEASE_SECONDS = 30.0
WORKERFLEET = Path(sys.executable).with_name("workerfleet")


async def test_every_enqueue_path_leaves_max_attempts_to_the_claim(repo: Repository) -> None:
    plain = await repo.enqueue("q", "t")
    unique = await repo.enqueue("q", "t", unique_key="k")
    batch = await repo.enqueue_many([EnqueueRequest("q", "t"), EnqueueRequest("q", "t")])
    keyed_batch = await repo.enqueue_many([EnqueueRequest("q", "t", unique_key="b")])
    by_sql = await repo.connector.fetchval("SELECT workerfleet.enqueue('q', 't')")
    connection = await connect(repo.connector.dsn)
    try:
        on_connection = await enqueue_on(connection, EnqueueRequest("q", "t"))
    finally:
        await connection.close()
    ids = [plain, unique, *batch, *keyed_batch, by_sql, on_connection]
    for job_id in ids:
        job = await repo.get_job(job_id)
        assert job is not None
        assert job.max_attempts is None, job_id


async def test_the_first_claim_gives_the_workers_setting_and_it_stays(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t")
    [claimed] = await repo.claim("w1", ["q"], 1, LEASE_SECONDS, default_max_attempts=2)
    assert (claimed.id, claimed.attempt, claimed.max_attempts) == (job_id, 1, 2)
    assert await repo.fail(claimed.ref, "boom", None, 0.0) == "retried"
    # Another worker, set otherwise, claims it next: the job keeps what it was given.
    [again] = await repo.claim("w2", ["q", "other"], 1, LEASE_SECONDS, default_max_attempts=9)
    assert (again.attempt, again.max_attempts) == (2, 2)
    assert await repo.fail(again.ref, "boom", None, 0.0) == "dead"


async def test_a_job_enqueued_with_max_attempts_keeps_it(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=3)
    [claimed] = await repo.claim("w1", ["q"], 1, LEASE_SECONDS, default_max_attempts=1)
    assert (claimed.id, claimed.max_attempts) == (job_id, 3)


async def test_a_running_job_without_max_attempts_is_refused(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t")
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_running_has_max_attempts"):
        await repo.connector.execute(
            "UPDATE workerfleet.jobs SET state = 'running', attempt = 1, worker_id = 'old', "
            "lease_expires_at = now() + interval '1 minute' WHERE id = $1",
            job_id,
        )


async def test_jobs_enqueued_before_the_migration_keep_their_max_attempts(
    postgres_dsn: str,
) -> None:
    async with await Connector.open(postgres_dsn, min_size=1, max_size=1) as connector:
        async with connector.pool.acquire() as connection:  # the schema as of 0003
            await connection.execute(QUERIES["migrations_bootstrap"])
            for migration in migrations.available_migrations()[:3]:
                await connection.execute(migration.sql)
                await connection.execute(QUERIES["migrations_record"], migration.version)
            old_id = await connection.fetchval("SELECT workerfleet.enqueue('q', 't')")
        assert (await migrations.migrate(connector))[0] == "0004"  # and any later ones
        repo = Repository(connector)
        old = await repo.get_job(old_id)
        assert old is not None
        assert old.max_attempts == 5  # 0001's default, kept
        new = await repo.get_job(await repo.enqueue("q", "t"))
        assert new is not None
        assert new.max_attempts is None


async def test_the_cli_shows_default_until_a_worker_claims_the_job(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t")

    def cli(*args: str) -> str:
        result = subprocess.run(
            [str(WORKERFLEET), "--dsn", repo.connector.dsn, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "max_attempts: default" in cli("jobs", "show", str(job_id))
    assert " 0/default " in cli("jobs", "list", "--queue", "q")
