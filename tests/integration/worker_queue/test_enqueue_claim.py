"""Enqueue and claim against the real PostgreSQL: order, scheduling, uniqueness, batches."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from workerfleet.worker.connector import Connector, connect
from workerfleet.worker.models import EnqueueRequest, InvalidJobError
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import NOTIFY_CHANNEL, Repository

WORKER = "worker-a"
LEASE_SECONDS = 30.0


async def test_enqueue_claim_complete(repo: Repository) -> None:
    job_id = await repo.enqueue("emails", "send", {"to": "a@example.test"}, max_attempts=3)
    pending = await repo.get_job(job_id)
    assert pending is not None
    assert (pending.state, pending.attempt, pending.max_attempts) == ("pending", 0, 3)
    assert pending.payload == {"to": "a@example.test"}

    [claimed] = await repo.claim(WORKER, ["emails"], 10, LEASE_SECONDS)
    assert claimed.id == job_id
    assert (claimed.state, claimed.attempt, claimed.worker_id) == ("running", 1, WORKER)
    assert claimed.started_at is not None
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at - claimed.started_at == timedelta(seconds=LEASE_SECONDS)
    assert await repo.claim(WORKER, ["emails"], 10, LEASE_SECONDS) == []

    assert await repo.complete(claimed.ref, {"sent": True}) is True
    done = await repo.get_job(job_id)
    assert done is not None
    assert (done.state, done.result, done.lease_expires_at) == ("succeeded", {"sent": True}, None)
    assert done.finished_at is not None


async def test_claim_takes_higher_priority_first_then_oldest(repo: Repository) -> None:
    low = await repo.enqueue("q", "t", priority=0)
    high = await repo.enqueue("q", "t", priority=10)
    also_low = await repo.enqueue("q", "t", priority=0)
    urgent = await repo.enqueue("q", "t", priority=99)
    claimed = await repo.claim(WORKER, ["q"], 3, LEASE_SECONDS)
    assert [job.id for job in claimed] == [urgent, high, low]
    [last] = await repo.claim(WORKER, ["q"], 3, LEASE_SECONDS)
    assert last.id == also_low


async def test_claim_only_from_the_given_queues_and_up_to_the_limit(repo: Repository) -> None:
    ids = await repo.enqueue_many([EnqueueRequest("a", "t") for _ in range(5)])
    other = await repo.enqueue("b", "t")
    first = await repo.claim(WORKER, ["a"], 2, LEASE_SECONDS)
    assert [job.id for job in first] == ids[:2]
    rest = await repo.claim(WORKER, ["a", "c"], 10, LEASE_SECONDS)
    assert [job.id for job in rest] == ids[2:]
    both = await repo.claim(WORKER, ["a", "b"], 10, LEASE_SECONDS)
    assert [job.id for job in both] == [other]
    assert await repo.claim(WORKER, ["a", "b"], 0, LEASE_SECONDS) == []


async def test_run_at_in_the_future_is_not_claimed_until_due(
    repo: Repository, connector: Connector
) -> None:
    later = await repo.enqueue("q", "t", run_at=datetime.now(UTC) + timedelta(hours=1))
    delayed = await repo.enqueue("q", "t", delay_seconds=3600)
    due = await repo.enqueue("q", "t", priority=-5)
    assert [job.id for job in await repo.claim(WORKER, ["q"], 10, LEASE_SECONDS)] == [due]
    delayed_job = await repo.get_job(delayed)
    assert delayed_job is not None
    assert delayed_job.run_at - delayed_job.created_at == timedelta(seconds=3600)

    await connector.execute(
        "UPDATE workerfleet.jobs SET run_at = now() - interval '1 second' WHERE id = $1", later
    )
    assert [job.id for job in await repo.claim(WORKER, ["q"], 10, LEASE_SECONDS)] == [later]


async def test_unique_key_returns_the_live_job(repo: Repository) -> None:
    first = await repo.enqueue("q", "report", {"day": 1}, unique_key="report-day-1")
    again = await repo.enqueue("q", "report", {"day": 1}, unique_key="report-day-1")
    assert again == first
    elsewhere = await repo.enqueue("other", "report", unique_key="report-day-1")
    assert elsewhere != first

    [running] = await repo.claim(WORKER, ["q"], 1, LEASE_SECONDS)
    assert await repo.enqueue("q", "report", unique_key="report-day-1") == first

    assert await repo.complete(running.ref, None)
    fresh = await repo.enqueue("q", "report", unique_key="report-day-1")
    assert fresh != first
    jobs = await repo.list_jobs(queue="q")
    assert sorted(job.id for job in jobs) == sorted([first, fresh])


async def test_enqueue_many_keeps_order_and_dedupes_within_the_batch(repo: Repository) -> None:
    existing = await repo.enqueue("q", "t", unique_key="k1")
    requests = [
        EnqueueRequest("q", "t", {"n": 1}),
        EnqueueRequest("q", "t", {"n": 2}, unique_key="k1"),
        EnqueueRequest("other", "t", {"n": 3}, priority=4, max_attempts=2),
        EnqueueRequest("q", "t", {"n": 4}, unique_key="k2"),
        EnqueueRequest("q", "t", {"n": 5}, unique_key="k2"),
        EnqueueRequest("q", "t", [1, "two"], delay_seconds=60),
    ]
    ids = await repo.enqueue_many(requests)
    assert len(ids) == len(requests)
    assert ids[1] == existing
    assert ids[4] == ids[3]
    assert len(set(ids)) == 5
    third = await repo.get_job(ids[2])
    assert third is not None
    assert (third.queue, third.priority, third.max_attempts, third.payload) == (
        "other",
        4,
        2,
        {"n": 3},
    )
    last = await repo.get_job(ids[5])
    assert last is not None
    assert last.payload == [1, "two"]
    assert last.run_at > last.created_at
    assert await repo.enqueue_many([]) == []


async def test_sql_function_enqueues_with_defaults(repo: Repository, connector: Connector) -> None:
    job_id = await connector.fetchval("SELECT workerfleet.enqueue('reports', 'build')")
    job = await repo.get_job(job_id)
    assert job is not None
    assert (job.queue, job.task, job.priority, job.max_attempts, job.payload) == (
        "reports",
        "build",
        0,
        None,  # the claiming worker's WORKERFLEET_MAX_ATTEMPTS
        None,
    )
    keyed = await connector.fetchval(
        "SELECT workerfleet.enqueue('reports', 'build', '{\"a\": 1}', 3, NULL, 2, 'k')"
    )
    assert (
        await connector.fetchval(
            "SELECT workerfleet.enqueue('reports', 'build', unique_key => 'k')"
        )
        == keyed
    )


@pytest.mark.parametrize("bad", ["", "Upper", "-leading", "has space", "x" * 64, "a/b"])
async def test_invalid_queue_name_is_refused_everywhere(
    repo: Repository, connector: Connector, bad: str
) -> None:
    with pytest.raises(InvalidJobError) as python_side:
        await repo.enqueue(bad, "t")
    assert python_side.value.field == "queue"
    assert "invalid queue name" in str(python_side.value)

    with pytest.raises(asyncpg.CheckViolationError, match="invalid queue name"):
        await connector.fetchval("SELECT workerfleet.enqueue($1, 't')", bad)
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_queue_name_valid"):
        await connector.execute("INSERT INTO workerfleet.jobs (queue, task) VALUES ($1, 't')", bad)
    assert await repo.list_jobs() == []


async def test_invalid_arguments_name_the_field(repo: Repository) -> None:
    cases: list[tuple[str, dict[str, object]]] = [
        ("task", {"task": ""}),
        ("priority", {"priority": 2**40}),
        ("max_attempts", {"max_attempts": 0}),
        ("delay_seconds", {"delay_seconds": -1}),
        ("run_at", {"run_at": datetime(2030, 1, 1)}),
        ("run_at", {"run_at": datetime.now(UTC), "delay_seconds": 1}),
        ("unique_key", {"unique_key": ""}),
    ]
    for field, overrides in cases:
        arguments: dict[str, object] = {"queue": "q", "task": "t", **overrides}
        with pytest.raises(InvalidJobError) as error:
            EnqueueRequest(**arguments)  # type: ignore[arg-type]
        assert error.value.field == field, overrides
    with pytest.raises(InvalidJobError) as listed:
        await repo.enqueue_many([EnqueueRequest("q", "t"), EnqueueRequest("Q!", "t")])
    assert listed.value.field == "queue"
    # Payloads that JSON allows and jsonb refuses, each refused before the round trip.
    for payload in ({"text": "a\x00b"}, [float("nan")], {"x": float("inf")}, {"k": {1, 2}}):
        for requests in (
            [EnqueueRequest("q", "t", payload)],
            [EnqueueRequest("q", "t", payload)] * 2,
        ):
            with pytest.raises(InvalidJobError) as unstorable:
                await repo.enqueue_many(requests)
            assert unstorable.value.field == "payload", payload
    assert await repo.list_jobs() == []
    # A backslash before "u0000" is text, not a NUL: stored as given.
    escaped = await repo.enqueue("q", "t", {"text": "\\u0000"})
    job = await repo.get_job(escaped)
    assert job is not None
    assert job.payload == {"text": "\\u0000"}


async def test_enqueue_notifies_the_queue_name(repo: Repository, connector: Connector) -> None:
    listener = await connect(connector.dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[3]))
        await repo.enqueue("wake-me", "t")
        assert await asyncio.wait_for(received.get(), timeout=10) == "wake-me"
        await repo.enqueue_many([EnqueueRequest("batch", "t") for _ in range(50)])
        assert await asyncio.wait_for(received.get(), timeout=10) == "batch"
    finally:
        await listener.close()


async def test_claim_across_queues_keeps_global_priority_order(repo: Repository) -> None:
    a_low = await repo.enqueue("a", "t", priority=1)
    b_high = await repo.enqueue("b", "t", priority=9)
    a_high = await repo.enqueue("a", "t", priority=5)
    b_low = await repo.enqueue("b", "t", priority=0)
    claimed = await repo.claim(WORKER, ["a", "b"], 3, LEASE_SECONDS)
    assert [job.id for job in claimed] == [b_high, a_high, a_low]
    assert [job.id for job in await repo.claim(WORKER, ["b", "a"], 3, LEASE_SECONDS)] == [b_low]


@pytest.mark.parametrize(
    ("query", "queues"), [("claim_one_queue", "backlog"), ("claim", ["backlog", "other"])]
)
async def test_claim_can_never_take_the_stats_index(
    repo: Repository, connector: Connector, query: str, queues: object
) -> None:
    # With stale statistics the planner once claimed through (queue, run_at) and
    # sorted the whole backlog each time; the stats index is now out of reach.
    await repo.enqueue_many([EnqueueRequest("backlog", "t") for _ in range(2_000)])
    sql = QUERIES[query].split("\n", 1)[1]
    async with connector.pool.acquire() as connection:
        plan = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", "w", queues, 16, 30.0, 5)
        assert "jobs_claimable_idx" in json.dumps(plan)
        transaction = connection.transaction()
        await transaction.start()
        try:
            # Even without the claimable index the claim must not use the stats one.
            await connection.execute("DROP INDEX workerfleet.jobs_claimable_idx")
            await connection.execute("SET LOCAL enable_seqscan = off")
            fallback = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) {sql}", "w", queues, 16, 30.0, 5
            )
        finally:
            await transaction.rollback()
    assert "jobs_pending_run_at_idx" not in json.dumps(fallback)
