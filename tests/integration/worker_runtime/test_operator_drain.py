"""A drain the operator asks for, seen by a real worker process: it finishes what it runs,
claims nothing more and turns unready; taken back, it claims again; SIGTERM still drains."""

from __future__ import annotations

import asyncpg

from tests.integration.worker_runtime.support import Worker, eventually, wait_ready
from workerfleet.worker.repository import Repository

QUEUE = "runtime"
HEARTBEATS_WHILE_HELD = 3


async def worker_id_of(repository: Repository) -> str:
    (row,) = await repository.list_workers()
    return row.id


async def heartbeat_count(db: asyncpg.Connection, worker_id: str, seen: list[object]) -> bool:
    """True once the worker's heartbeat_at moved HEARTBEATS_WHILE_HELD times (a logical
    clock: each beat is a full turn of the worker's side tasks, claim loop included)."""
    beat = await db.fetchval(
        "SELECT heartbeat_at FROM workerfleet.workers WHERE id = $1", worker_id
    )
    if not seen or seen[-1] != beat:
        seen.append(beat)
    return len(seen) > HEARTBEATS_WHILE_HELD


async def test_a_drained_worker_finishes_its_job_claims_nothing_and_comes_back(
    repository: Repository, queue_dsn: str, db: asyncpg.Connection, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn, concurrency=2).start()
    workers.append(worker)
    await wait_ready(worker)
    worker_id = await worker_id_of(repository)
    running_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 2})
    await eventually(
        lambda: repository.running_jobs_of_workers([worker_id]), "the worker to run the job"
    )

    assert await repository.drain_workers([worker_id]) == {worker_id}
    await eventually(lambda: worker.probe("/readyz") == 503, "the drained worker to turn unready")
    waiting = [await repository.enqueue(QUEUE, "record", {"n": n}) for n in range(3)]
    seen: list[object] = []
    await eventually(lambda: heartbeat_count(db, worker_id, seen), "a few heartbeats")
    for job_id in waiting:
        job = await repository.get_job(job_id)
        assert job is not None
        assert (job.state, job.attempt) == ("pending", 0)
    ran = await eventually(
        lambda: db.fetch(
            "SELECT job_id, attempt FROM runtime_test.side_effects WHERE job_id = $1", running_id
        ),
        "the job it held to finish",
    )
    assert [tuple(row) for row in ran] == [(running_id, 1)]
    assert "the operator asked for a drain" in worker.logs()

    assert await repository.undrain_workers([worker_id]) == {worker_id}
    await eventually(lambda: worker.probe("/readyz") == 200, "ready again")

    async def all_four_ran() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM runtime_test.side_effects") == 4)

    await eventually(all_four_ran, "the waiting jobs to run")
    done = await db.fetch("SELECT job_id, attempt FROM runtime_test.side_effects ORDER BY job_id")
    assert [tuple(row) for row in done] == [(running_id, 1)] + [(j, 1) for j in waiting]


async def test_a_drained_worker_still_stops_cleanly_on_sigterm(
    repository: Repository, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn).start()
    workers.append(worker)
    await wait_ready(worker)
    worker_id = await worker_id_of(repository)
    await repository.drain_workers([worker_id])
    await eventually(lambda: worker.probe("/readyz") == 503, "the drained worker to turn unready")
    worker.signal(15)
    assert worker.wait_exit() == 0
    (row,) = await repository.list_workers()
    assert row.state == "offline"
    # Its own shutdown cleared the request: the operator cannot bring it back by mistake.
    assert await repository.undrain_workers([worker_id]) == set()
