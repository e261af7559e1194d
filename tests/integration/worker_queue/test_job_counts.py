"""The depth counters: one set of rows per backend, folded when backends go,
rebuilt by a recount after they drifted; and the housekeeping lock."""

from __future__ import annotations

import asyncpg

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import CountDrift, EnqueueRequest
from workerfleet.worker.repository import RECOVERY_LOCK_KEY, Repository

LEASE_SECONDS = 30.0


async def _truth(connector: Connector) -> dict[tuple[str, str], int]:
    rows = await connector.fetch(
        "SELECT queue, state, count(*) AS n FROM workerfleet.jobs GROUP BY 1, 2"
    )
    return {(row["queue"], row["state"]): row["n"] for row in rows}


async def _counters(connector: Connector) -> dict[tuple[str, str], int]:
    rows = await connector.fetch(
        "SELECT queue, state, sum(n)::bigint AS n FROM workerfleet.job_counts "
        "GROUP BY 1, 2 HAVING sum(n) <> 0"
    )
    return {(row["queue"], row["state"]): row["n"] for row in rows}


async def test_each_backend_counts_in_rows_of_its_own(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue("q", "t")
    async with connector.pool.acquire() as other:
        other_pid = await other.fetchval("SELECT pg_backend_pid()")
        await other.execute("INSERT INTO workerfleet.jobs (queue, task) VALUES ('q', 't')")
    own_pid = await connector.fetchval("SELECT pg_backend_pid()")
    slots = await connector.fetch("SELECT slot, n FROM workerfleet.job_counts ORDER BY slot")
    assert sorted((row["slot"], row["n"]) for row in slots) == sorted(
        [(own_pid, 1), (other_pid, 1)]
    )


async def test_counters_of_gone_backends_fold_into_slot_zero(
    repo: Repository, connector: Connector, postgres_dsn: str
) -> None:
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(3)])
    for _ in range(3):  # three short-lived clients, each counting in its own slot
        client = await asyncpg.connect(postgres_dsn)
        await client.execute("INSERT INTO workerfleet.jobs (queue, task) VALUES ('q', 't')")
        await client.close()
    before = await _counters(connector)
    assert before == {("q", "pending"): 6}

    # Backends exit a moment after their client closes: fold until all three went.
    folded = 0
    while folded < 3:
        folded += await repo.fold_job_counts()
    assert folded == 3
    assert await _counters(connector) == before
    slots = await connector.fetch("SELECT DISTINCT slot FROM workerfleet.job_counts")
    own_pid = await connector.fetchval("SELECT pg_backend_pid()")
    assert {row["slot"] for row in slots} == {0, own_pid}  # a live writer keeps its row


async def test_a_recount_repairs_counters_that_drifted(
    repo: Repository, connector: Connector
) -> None:
    ids = await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(10)])
    jobs = await repo.claim("w", ["q"], 4, LEASE_SECONDS)
    for job in jobs[:2]:
        assert await repo.complete(job.ref, None)
    # Writes with triggers off (a bulk load or a repair by hand) leave the counters behind.
    async with connector.transaction() as connection:
        await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(
            "UPDATE workerfleet.jobs SET state = 'dead', finished_at = now() "
            "WHERE id = ANY($1::bigint[])",
            ids[5:8],
        )
        await connection.execute(
            "INSERT INTO workerfleet.jobs (queue, task) SELECT 'other', 't' "
            "FROM generate_series(1, 4)"
        )
    truth = await _truth(connector)
    assert await _counters(connector) != truth
    [stats] = [row for row in await repo.queue_stats() if row.queue == "q"]
    assert (stats.pending, stats.dead) == (6, 0)  # wrong: 3 of those are dead

    drift = await repo.recount_jobs()
    assert drift == [
        CountDrift("other", "pending", 4, -4),
        CountDrift("q", "dead", 3, -3),
        CountDrift("q", "pending", 3, 3),
        CountDrift("q", "running", 2, 0),
        CountDrift("q", "succeeded", 2, 0),
    ]
    assert await _counters(connector) == truth
    stats_by_queue = {row.queue: row for row in await repo.queue_stats()}
    assert (stats_by_queue["q"].pending, stats_by_queue["q"].dead) == (3, 3)
    assert stats_by_queue["other"].pending == 4
    # Counting goes on from the repaired figures.
    assert await repo.complete(jobs[2].ref, None)
    assert await _counters(connector) == await _truth(connector)
    assert all(row.drift == 0 for row in await repo.recount_jobs())


async def test_housekeeping_runs_in_one_process_at_a_time(
    repo: Repository, connector: Connector, postgres_dsn: str
) -> None:
    job_id = await repo.enqueue("q", "t")
    await repo.claim("w", ["q"], 1, LEASE_SECONDS)
    await connector.execute(
        "UPDATE workerfleet.jobs SET lease_expires_at = now() - interval '1 second'"
    )
    other = await asyncpg.connect(postgres_dsn)
    try:
        async with other.transaction():
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECOVERY_LOCK_KEY)
            assert await repo.rescue_unless_another_does() is None
            job = await repo.get_job(job_id)
            assert job is not None
            assert job.state == "running"
    finally:
        await other.close()
    result = await repo.rescue_unless_another_does()
    assert result is not None
    assert (result.rescued, result.dead) == (1, 0)
