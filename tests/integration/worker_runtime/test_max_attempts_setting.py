"""WORKERFLEET_MAX_ATTEMPTS (a pool's spec.worker.maxAttempts) acts: a real worker gives it
to the jobs enqueued without max_attempts of their own, and dead-letters them by it."""

from __future__ import annotations

import asyncpg

from tests.integration.worker_runtime.support import Worker, eventually
from workerfleet.worker.repository import Repository

QUEUE = "runtime"


async def test_the_workers_max_attempts_is_the_default_of_jobs_without_their_own(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    workers.append(Worker(queue_dsn, extra_env={"WORKERFLEET_MAX_ATTEMPTS": "2"}).start())
    failing = {"rate": 1, "message": "no luck"}
    by_worker = await repository.enqueue(QUEUE, "fail", failing)
    by_job = await repository.enqueue(QUEUE, "fail", failing, max_attempts=3)

    async def dead(job_id: int) -> asyncpg.Record | None:
        row = await db.fetchrow(
            "SELECT attempt, max_attempts FROM workerfleet.jobs WHERE id = $1 AND state = 'dead'",
            job_id,
        )
        return row

    assert tuple(await eventually(lambda: dead(by_worker), "the job to die")) == (2, 2)
    assert tuple(await eventually(lambda: dead(by_job), "the other job to die")) == (3, 3)
