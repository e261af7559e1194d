"""Without a Monitor, the workers themselves hand back a dead worker's jobs
once their leases expire (the fallback rescue), one worker at a time."""

from __future__ import annotations

import signal

import asyncpg

from tests.integration.worker_runtime.support import Worker, eventually, wait_ready
from workerfleet.worker.repository import Repository

QUEUE = "runtime"


async def _row(db: asyncpg.Connection, job_id: int) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM workerfleet.jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def test_a_sigkilled_workers_job_is_rescued_by_another_worker_without_a_monitor(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    victim = Worker(queue_dsn, concurrency=1, extra_env={"WORKERFLEET_RESCUE_INTERVAL": "0"})
    workers.append(victim.start())
    await wait_ready(victim)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 2})

    async def running() -> bool:
        return bool((await _row(db, job_id))["state"] == "running")

    await eventually(running, "the job to start on the victim")
    victim_id = (await _row(db, job_id))["worker_id"]
    victim.signal(signal.SIGKILL)
    assert victim.wait_exit() == -signal.SIGKILL

    survivor = Worker(queue_dsn, concurrency=1, extra_env={"WORKERFLEET_RESCUE_INTERVAL": "500ms"})
    workers.append(survivor.start())

    async def succeeded() -> bool:
        return bool((await _row(db, job_id))["state"] == "succeeded")

    await eventually(succeeded, "the survivor to rescue and finish the job")
    row = await _row(db, job_id)
    assert row["worker_id"] != victim_id
    assert (row["attempt"], row["rescues"]) == (2, 1)
    assert row["last_error"].startswith(f"lease expired on worker {victim_id}")
    effects = await db.fetch(
        "SELECT worker_id FROM runtime_test.side_effects WHERE job_id = $1", job_id
    )
    assert [effect["worker_id"] for effect in effects] == [row["worker_id"]]
    assert survivor.metric("workerfleet_worker_fallback_rescued_jobs_total", outcome="pending") == 1
    # Not a dead-worker reap (nothing ran one): the victim's row still says online.
    victim_state = await db.fetchval(
        "SELECT state FROM workerfleet.workers WHERE id = $1", victim_id
    )
    assert victim_state == "online"
