"""Recovery primitives (expired leases, dead workers), stats and retention."""

from __future__ import annotations

import random

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest, MinuteFailures, QueueStats, WorkerStats
from workerfleet.worker.repository import Repository

LEASE_SECONDS = 30.0


async def _age_worker(connector: Connector, worker_id: str, seconds: int) -> None:
    await connector.execute(
        "UPDATE workerfleet.workers SET heartbeat_at = now() - make_interval(secs => $2) "
        "WHERE id = $1",
        worker_id,
        float(seconds),
    )


async def test_expired_leases_go_back_to_pending_or_dead(
    repo: Repository, connector: Connector
) -> None:
    retry_id = await repo.enqueue("q", "t", max_attempts=3, priority=2)
    last_chance_id = await repo.enqueue("q", "t", max_attempts=1, priority=1)
    healthy_id = await repo.enqueue("q", "t")
    claimed = await repo.claim("w-lost", ["q"], 3, LEASE_SECONDS)
    assert [job.id for job in claimed] == [retry_id, last_chance_id, healthy_id]
    await connector.execute(
        "UPDATE workerfleet.jobs SET lease_expires_at = now() - interval '1 minute' "
        "WHERE id = ANY($1::bigint[])",
        [retry_id, last_chance_id],
    )

    result = await repo.rescue_expired_leases()
    assert (result.rescued, result.dead) == (1, 1)
    rescued = await repo.get_job(retry_id)
    assert rescued is not None
    assert (rescued.state, rescued.attempt, rescued.lease_expires_at) == ("pending", 1, None)
    assert rescued.last_error is not None
    assert rescued.last_error.startswith("lease expired on worker w-lost")
    dead = await repo.get_job(last_chance_id)
    assert dead is not None
    assert dead.state == "dead"
    assert dead.finished_at is not None
    assert dead.last_error is not None
    assert "lease expired on worker w-lost" in dead.last_error
    healthy = await repo.get_job(healthy_id)
    assert healthy is not None
    assert healthy.state == "running"
    assert await repo.rescue_expired_leases() == type(result)(rescued=0, dead=0)

    [again] = await repo.claim("w-new", ["q"], 5, LEASE_SECONDS)
    assert (again.id, again.attempt) == (retry_id, 2)


async def test_silent_workers_are_marked_dead_and_their_jobs_released(
    repo: Repository, connector: Connector
) -> None:
    await repo.register_worker("w-silent", "pool-a", ["q"], "pod-silent", "1.0")
    await repo.register_worker("w-alive", "pool-a", ["q"], "pod-alive", "1.0")
    await repo.register_worker("w-gone", "pool-a", ["q"], "pod-gone", "1.0")
    retry_id = await repo.enqueue("q", "t", max_attempts=5, priority=3)
    spent_id = await repo.enqueue("q", "t", max_attempts=1, priority=2)
    alive_id = await repo.enqueue("q", "t", priority=1)
    silent_jobs = await repo.claim("w-silent", ["q"], 2, LEASE_SECONDS)
    [alive_job] = await repo.claim("w-alive", ["q"], 1, LEASE_SECONDS)
    assert alive_job.id == alive_id
    await repo.set_worker_state("w-gone", "offline")
    for worker_id in ("w-silent", "w-gone"):
        await _age_worker(connector, worker_id, 600)

    result = await repo.reap_dead_workers(older_than_seconds=120)
    assert (result.workers, result.jobs_released, result.jobs_dead) == (1, 1, 1)
    assert (result.worker_ids, result.pods) == (("w-silent",), ("pod-silent",))
    states = {worker.id: worker.state for worker in await repo.list_workers("pool-a")}
    assert states == {"w-silent": "dead", "w-alive": "online", "w-gone": "offline"}

    released = await repo.get_job(retry_id)
    assert released is not None
    assert (released.state, released.attempt) == ("pending", 1)
    assert released.last_error is not None
    assert released.last_error.startswith("worker w-silent stopped heartbeating")
    spent = await repo.get_job(spent_id)
    assert spent is not None
    assert spent.state == "dead"
    assert await repo.complete(silent_jobs[0].ref, None) is False
    assert await repo.reap_dead_workers(older_than_seconds=120) == type(result)(0, 0, 0, (), ())

    # A heartbeat proves the worker alive again; its old job stays fenced.
    assert await repo.heartbeat("w-silent", [silent_jobs[0].ref], LEASE_SECONDS, 0, 0, 0) == set()
    states = {worker.id: worker.state for worker in await repo.list_workers()}
    assert states["w-silent"] == "online"


async def test_queue_stats_by_queue_and_state(repo: Repository, connector: Connector) -> None:
    await repo.enqueue_many([EnqueueRequest("alpha", "t") for _ in range(6)])
    await repo.enqueue_many([EnqueueRequest("alpha", "t", delay_seconds=3600) for _ in range(2)])
    await repo.enqueue("beta", "t", max_attempts=1)
    running = await repo.claim("w", ["alpha"], 4, LEASE_SECONDS)
    assert await repo.complete(running[0].ref, None)
    assert await repo.complete(running[1].ref, None)
    assert await repo.fail(running[2].ref, "e", "tb", 0) == "retried"
    [beta] = await repo.claim("w", ["beta"], 1, LEASE_SECONDS)
    assert await repo.fail(beta.ref, "e", "tb", 0) == "dead"
    await connector.execute(
        "UPDATE workerfleet.jobs SET finished_at = now() - interval '5 minutes' WHERE id = $1",
        running[1].id,
    )
    await connector.execute(
        "UPDATE workerfleet.jobs SET run_at = now() - interval '90 seconds' "
        "WHERE queue = 'alpha' AND state = 'pending' AND run_at <= now()"
    )
    cancelled_id = await repo.enqueue("gamma", "t")
    assert await repo.cancel(cancelled_id)

    stats = {row.queue: row for row in await repo.queue_stats()}
    assert sorted(stats) == ["alpha", "beta", "gamma"]
    alpha = stats["alpha"]
    assert alpha.oldest_pending_seconds is not None
    assert 89 <= alpha.oldest_pending_seconds < 200
    assert alpha == QueueStats(
        queue="alpha",
        pending=3,
        scheduled=2,
        running=1,
        succeeded=2,
        dead=0,
        cancelled=0,
        oldest_pending_seconds=alpha.oldest_pending_seconds,
        finished_last_minute=1,
        failures=(MinuteFailures(minutes_ago=0, failed=1, dead=0),),
    )
    assert stats["beta"] == QueueStats(
        "beta", 0, 0, 0, 0, 1, 0, None, 1, (MinuteFailures(0, failed=1, dead=1),)
    )
    assert stats["gamma"] == QueueStats("gamma", 0, 0, 0, 0, 0, 1, None, 1)


async def test_counters_agree_with_a_full_count_after_random_traffic(
    repo: Repository, connector: Connector
) -> None:
    chance = random.Random(7)
    queues = ["a", "b", "c"]
    await repo.enqueue_many(
        [EnqueueRequest(chance.choice(queues), "t", max_attempts=2) for _ in range(300)]
    )
    for round_number in range(10):
        claimed = await repo.claim(f"w{round_number}", queues, 25, LEASE_SECONDS)
        for job in claimed:
            action = chance.random()
            if action < 0.4:
                await repo.complete(job.ref, None)
            elif action < 0.7:
                await repo.fail(job.ref, "e", "tb", 0)
            elif action < 0.8:
                await repo.release(job.ref)
            elif action < 0.9:
                await repo.cancel(job.id)
        await repo.enqueue("b", "t", unique_key=f"k{round_number % 3}")
    await connector.execute("DELETE FROM workerfleet.jobs WHERE id % 7 = 0")
    await repo.prune_finished(0, ["cancelled"])

    truth = {
        (row["queue"], row["state"]): row["n"]
        for row in await connector.fetch(
            "SELECT queue, state, count(*) AS n FROM workerfleet.jobs GROUP BY 1, 2"
        )
    }
    seen: dict[tuple[str, str], int] = {}
    for row in await repo.queue_stats():
        for state, count in (
            ("pending", row.pending + row.scheduled),
            ("running", row.running),
            ("succeeded", row.succeeded),
            ("dead", row.dead),
            ("cancelled", row.cancelled),
        ):
            if count:
                seen[(row.queue, state)] = count
    assert seen == truth
    assert sum(truth.values()) > 100

    await connector.execute("TRUNCATE workerfleet.jobs")
    assert await repo.queue_stats() == []


async def test_worker_stats_per_pool(repo: Repository, connector: Connector) -> None:
    for worker_id, pool in [
        ("busy-1", "p1"),
        ("idle-1", "p1"),
        ("drain-1", "p1"),
        ("stale-1", "p1"),
        ("dead-1", "p1"),
        ("off-1", "p1"),
        ("idle-2", "p2"),
    ]:
        await repo.register_worker(worker_id, pool, ["q"], None, None)
    await repo.heartbeat("busy-1", [], LEASE_SECONDS, 3, 0, 0)
    await repo.set_worker_state("drain-1", "draining")
    await repo.heartbeat("drain-1", [], LEASE_SECONDS, 1, 0, 0)  # still finishing a job
    await repo.set_worker_state("dead-1", "dead")
    await repo.set_worker_state("off-1", "offline")
    await _age_worker(connector, "stale-1", 300)

    stats = await repo.worker_stats(dead_after_seconds=60)
    assert stats == [
        WorkerStats(pool="p1", online=2, busy=1, idle=1, draining=1, dead=2, holding=2),
        WorkerStats(pool="p2", online=1, busy=0, idle=1, draining=0, dead=0, holding=0),
    ]


async def test_prune_finished_by_age_and_state(repo: Repository, connector: Connector) -> None:
    ids = await repo.enqueue_many([EnqueueRequest("q", "t", max_attempts=1) for _ in range(6)])
    jobs = await repo.claim("w", ["q"], 6, LEASE_SECONDS)
    for job in jobs[:3]:
        await repo.complete(job.ref, None)
    for job in jobs[3:5]:
        await repo.fail(job.ref, "e", "tb", 0)
    await connector.execute(
        "UPDATE workerfleet.jobs SET finished_at = now() - interval '2 days' "
        "WHERE id = ANY($1::bigint[])",
        [jobs[0].id, jobs[1].id, jobs[3].id],
    )

    assert await repo.prune_finished(86_400, ["succeeded"]) == 2
    assert await repo.prune_finished(86_400) == 1
    assert await repo.prune_finished(86_400) == 0
    remaining = {job.id for job in await repo.list_jobs(limit=100)}
    assert remaining == set(ids) - {jobs[0].id, jobs[1].id, jobs[3].id}


async def test_prune_workers_removes_only_old_offline_and_dead_rows(
    repo: Repository, connector: Connector
) -> None:
    for worker_id in ("old-offline", "old-dead", "old-online", "new-offline"):
        await repo.register_worker(worker_id, "p", ["q"], None, None)
    await repo.set_worker_state("old-offline", "offline")
    await repo.set_worker_state("old-dead", "dead")
    await repo.set_worker_state("new-offline", "offline")
    for worker_id in ("old-offline", "old-dead", "old-online"):
        await _age_worker(connector, worker_id, 7200)
    assert await repo.prune_workers(3600) == 2
    assert {worker.id for worker in await repo.list_workers()} == {"old-online", "new-offline"}
