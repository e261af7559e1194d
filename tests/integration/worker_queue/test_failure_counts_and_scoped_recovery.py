"""Failure counts per queue and minute, recovery scoped to queues and pools, and the
recovery lock that keeps two passes on one database from running at once."""

from __future__ import annotations

import asyncio

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest, MinuteFailures, QueueStats
from workerfleet.worker.repository import RECOVERY_LOCK_KEY, Repository

LEASE_SECONDS = 30.0


async def _stats(repo: Repository) -> dict[str, QueueStats]:
    return {row.queue: row for row in await repo.queue_stats()}


async def _expire_leases(connector: Connector, ids: list[int], seconds_ago: int = 60) -> None:
    await connector.execute(
        "UPDATE workerfleet.jobs SET lease_expires_at = now() - make_interval(secs => $2) "
        "WHERE id = ANY($1::bigint[])",
        ids,
        float(seconds_ago),
    )


async def _silence(connector: Connector, worker_ids: list[str]) -> None:
    await connector.execute(
        "UPDATE workerfleet.workers SET heartbeat_at = now() - interval '10 minutes' "
        "WHERE id = ANY($1::text[])",
        worker_ids,
    )


async def test_every_failure_path_is_counted_and_nothing_else(
    repo: Repository, connector: Connector
) -> None:
    await repo.register_worker("w", "ns/p", ["q"], None, None)
    await repo.register_worker("silent", "ns/p", ["q"], None, None)
    await repo.enqueue_many([EnqueueRequest("q", "t", max_attempts=2) for _ in range(4)])
    await repo.enqueue_many([EnqueueRequest("q", "t", max_attempts=1) for _ in range(5)])
    jobs = await repo.claim("w", ["q"], 9, LEASE_SECONDS)
    retried, _, released, cancelled, buried, last_try, done, expired, _ = jobs
    assert await repo.fail(retried.ref, "e", None, 0) == "retried"
    assert await repo.release(released.ref)
    assert await repo.cancel(cancelled.id)
    assert await repo.bury(buried.ref, "unknown task", None) == "dead"
    assert await repo.fail(last_try.ref, "e", None, 0) == "dead"
    assert await repo.complete(done.ref, None)
    await _expire_leases(connector, [expired.id])
    assert (await repo.rescue_expired_leases()).dead == 1
    [reaped] = await repo.claim("silent", ["q"], 1, LEASE_SECONDS)
    await _silence(connector, ["silent"])
    assert (await repo.reap_dead_workers(60)).jobs_released == 1

    stats = (await _stats(repo))["q"]
    # retried, buried, last_try, expired (dead), reaped (released): five failed attempts,
    # three of them dead-lettered; the release, the cancel and the completion are not failures.
    assert stats.failures == (MinuteFailures(minutes_ago=0, failed=5, dead=3),)
    assert (stats.failed_within(1), stats.dead_within(1)) == (5, 3)
    assert reaped.queue == "q"


async def test_the_stats_read_the_last_hour_by_minute_and_old_counts_are_pruned(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue("q", "t")
    for minutes_ago, slot, failed, dead in [
        (0, 1, 2, 0),
        (0, 7, 1, 1),
        (5, 0, 4, 2),
        (70, 0, 9, 9),
    ]:
        await connector.execute(
            "INSERT INTO workerfleet.job_failures (queue, minute, slot, failed, dead) "
            "VALUES ('q', date_trunc('minute', now()) - make_interval(mins => $1), $2, $3, $4)",
            minutes_ago,
            slot,
            failed,
            dead,
        )
    stats = (await _stats(repo))["q"]
    assert stats.failures == (MinuteFailures(0, 3, 1), MinuteFailures(5, 4, 2))
    assert stats.failed_within(5) == 3  # this minute and the four before it
    assert stats.failed_within(6) == 7
    assert stats.dead_within(60) == 3

    assert await repo.prune_failure_counts() == 1
    remaining = await connector.fetchval("SELECT count(*) FROM workerfleet.job_failures")
    assert remaining == 3


async def test_rescue_touches_only_the_given_queues_and_waits_out_the_grace(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue_many([EnqueueRequest(q, "t") for q in ("mine", "mine", "theirs")])
    recent, old, theirs = sorted(
        await repo.claim("w", ["mine", "theirs"], 3, LEASE_SECONDS), key=lambda j: j.id
    )
    await _expire_leases(connector, [old.id, theirs.id], seconds_ago=120)
    await _expire_leases(connector, [recent.id], seconds_ago=10)

    result = await repo.rescue_expired_leases(queues=["mine"], grace_seconds=60)
    assert (result.rescued, result.dead) == (1, 0)
    states = {job.id: job.state for job in await repo.list_jobs(limit=10)}
    assert states == {old.id: "pending", recent.id: "running", theirs.id: "running"}

    assert (await repo.rescue_expired_leases(queues=["mine"], grace_seconds=5)).rescued == 1
    assert (await repo.rescue_expired_leases()).rescued == 1  # no scope: every queue


async def test_reaping_touches_only_the_given_pools(repo: Repository, connector: Connector) -> None:
    for worker_id, pool in [("a1", "ns/a"), ("b1", "ns/b"), ("a2", "other/a")]:
        await repo.register_worker(worker_id, pool, ["q"], f"pod-{worker_id}", None)
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(3)])
    for worker_id in ("a1", "b1", "a2"):
        assert len(await repo.claim(worker_id, ["q"], 1, LEASE_SECONDS)) == 1
    await _silence(connector, ["a1", "b1", "a2"])

    result = await repo.reap_dead_workers(60, pools=["ns/a"])
    assert (result.worker_ids, result.jobs_released) == (("a1",), 1)
    states = {w.id: w.state for w in await repo.list_workers()}
    assert states == {"a1": "dead", "b1": "online", "a2": "online"}


async def test_prune_is_scoped_to_queues_and_runs_in_batches(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue_many([EnqueueRequest(q, "t") for q in ["mine"] * 7 + ["theirs"] * 2])
    for job in await repo.claim("w", ["mine", "theirs"], 9, LEASE_SECONDS):
        assert await repo.complete(job.ref, None)
    assert await repo.prune_finished(0, ["succeeded"], queues=["mine"], batch_rows=3) == 7
    left = await repo.list_jobs(limit=20)
    assert sorted(job.queue for job in left) == ["theirs", "theirs"]


async def test_worker_stats_count_the_running_jobs_a_pool_holds(
    repo: Repository, connector: Connector
) -> None:
    await repo.register_worker("live", "ns/p", ["q"], None, None)
    await repo.register_worker("zombie", "ns/p", ["q"], None, None)
    await repo.register_worker("other", "ns/o", ["q"], None, None)
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(4)])
    await repo.claim("live", ["q"], 2, LEASE_SECONDS)
    await repo.claim("zombie", ["q"], 1, LEASE_SECONDS)
    await repo.claim("other", ["q"], 1, LEASE_SECONDS)
    await repo.set_worker_state("zombie", "dead")  # dead, its job not released yet

    by_pool = {row.pool: row for row in await repo.worker_stats(dead_after_seconds=60)}
    assert (by_pool["ns/p"].online, by_pool["ns/p"].running_jobs) == (1, 3)
    assert by_pool["ns/o"].running_jobs == 1


async def _waiting_for_the_recovery_lock(connector: Connector) -> bool:
    waiting = await connector.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND ((classid::bigint << 32) | objid::bigint) = $1",
        RECOVERY_LOCK_KEY,
    )
    return bool(waiting)


async def test_a_recovery_pass_waits_for_the_one_holding_the_lock(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(3)])
    ids = [job.id for job in await repo.claim("w", ["q"], 3, LEASE_SECONDS)]
    await _expire_leases(connector, ids)

    async with connector.transaction() as holder:
        await holder.execute("SELECT pg_advisory_xact_lock($1::bigint)", RECOVERY_LOCK_KEY)
        blocked = asyncio.create_task(repo.recover(60, queues=["q"]))
        for _ in range(500):
            if await _waiting_for_the_recovery_lock(connector):
                break
            await asyncio.sleep(0.01)
        assert await _waiting_for_the_recovery_lock(connector)
        assert not blocked.done()
        # Meanwhile nothing was rescued: the pass runs only once the lock is free.
        running = await holder.fetchval(
            "SELECT count(*) FROM workerfleet.jobs WHERE state = 'running'"
        )
        assert running == 3
    result = await blocked
    assert result.rescued.rescued == 3


async def test_concurrent_passes_rescue_each_job_exactly_once(
    repo: Repository, connector: Connector
) -> None:
    await repo.enqueue_many([EnqueueRequest("q", "t", max_attempts=5) for _ in range(40)])
    ids = [job.id for job in await repo.claim("w", ["q"], 40, LEASE_SECONDS)]
    await _expire_leases(connector, ids)

    results = await asyncio.gather(*(repo.recover(60) for _ in range(4)))
    assert sum(r.rescued.rescued for r in results) == 40
    assert (await _stats(repo))["q"].failed_within(1) == 40
    attempts = await connector.fetchval(
        "SELECT array_agg(DISTINCT attempt) FROM workerfleet.jobs WHERE state = 'pending'"
    )
    assert attempts == [1]
