"""Recovery keeps a job's place in line: a job whose run was lost (lease
expired, worker dead) runs again before the backlog enqueued after it; only a
job rescued before waits a growing delay (the poison-pill guard)."""

from __future__ import annotations

import datetime as dt

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest, Job
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository

LEASE_SECONDS = 30.0
BACKLOG_JOBS = 200
BACKOFF_SECONDS = 40.0
BACKOFF_CAP_SECONDS = 100.0


async def _expire_leases(connector: Connector) -> None:
    await connector.execute(
        "UPDATE workerfleet.jobs SET lease_expires_at = now() - interval '1 second' "
        "WHERE state = 'running'"
    )


async def _claim_order(repo: Repository, worker_id: str) -> list[int]:
    """Ids in the order workers get them, one claim at a time."""
    order: list[int] = []
    while claimed := await repo.claim(worker_id, ["q"], 1, LEASE_SECONDS):
        order.append(claimed[0].id)
    return order


async def _job(repo: Repository, job_id: int) -> Job:
    job = await repo.get_job(job_id)
    assert job is not None
    return job


async def test_a_rescued_job_runs_again_before_the_backlog_enqueued_after_it(
    repo: Repository, connector: Connector
) -> None:
    victim_id = await repo.enqueue("q", "t")
    [victim] = await repo.claim("w-lost", ["q"], 1, LEASE_SECONDS)
    backlog = await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(BACKLOG_JOBS)])
    await _expire_leases(connector)

    assert (await repo.rescue_expired_leases()).rescued == 1
    rescued = await _job(repo, victim_id)
    assert (rescued.state, rescued.run_at, rescued.rescues) == ("pending", victim.run_at, 1)
    order = await _claim_order(repo, "w-next")
    # Jobs started ahead of it: none (with run_at = now() it was all 200).
    assert order.index(victim_id) == 0
    assert sorted(order[1:]) == backlog


async def test_a_dead_workers_job_keeps_its_place_in_line(
    repo: Repository, connector: Connector
) -> None:
    await repo.register_worker("w-dead", "p", ["q"], "pod", None)
    victim_id = await repo.enqueue("q", "t")
    [victim] = await repo.claim("w-dead", ["q"], 1, LEASE_SECONDS)
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(BACKLOG_JOBS)])
    await connector.execute(
        "UPDATE workerfleet.workers SET heartbeat_at = now() - interval '10 minutes'"
    )

    assert (await repo.reap_dead_workers(older_than_seconds=60)).jobs_released == 1
    released = await _job(repo, victim_id)
    assert (released.state, released.run_at, released.rescues) == ("pending", victim.run_at, 1)
    assert (await _claim_order(repo, "w-next")).index(victim_id) == 0


async def test_a_job_rescued_again_backs_off_longer_each_time_up_to_the_cap(
    repo: Repository, connector: Connector
) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=10)
    waits: list[float] = []
    for rescue in range(5):
        [job] = await repo.claim("w", ["q"], 1, LEASE_SECONDS)
        assert job.attempt == rescue + 1
        await _expire_leases(connector)
        # In one transaction, so now() is the rescue's own clock reading.
        async with connector.transaction() as connection:
            rescued = await connection.fetchrow(
                QUERIES["rescue_expired_leases"], BACKOFF_SECONDS, BACKOFF_CAP_SECONDS, None, 0.0
            )
            waits.append(
                await connection.fetchval(
                    "SELECT extract(epoch FROM run_at - now())::float8 "
                    "FROM workerfleet.jobs WHERE id = $1",
                    job_id,
                )
            )
        assert rescued is not None
        assert rescued["rescued"] == 1
        assert (await _job(repo, job_id)).rescues == rescue + 1
        # Let the next claim have it at once.
        await connector.execute("UPDATE workerfleet.jobs SET run_at = now() WHERE id = $1", job_id)
    assert waits[0] < 0  # the first rescue keeps its (past) run_at
    assert waits[1:] == [40.0, 80.0, 100.0, 100.0]  # doubling, then the cap


async def test_retrying_a_dead_job_forgets_its_rescues(
    repo: Repository, connector: Connector
) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=1)
    await repo.claim("w", ["q"], 1, LEASE_SECONDS)
    await _expire_leases(connector)
    assert (await repo.rescue_expired_leases()).dead == 1
    assert (await _job(repo, job_id)).rescues == 1
    assert await repo.retry_dead(job_id)
    retried = await _job(repo, job_id)
    assert (retried.state, retried.attempt, retried.rescues) == ("pending", 0, 0)
    assert retried.run_at <= dt.datetime.now(dt.UTC)
