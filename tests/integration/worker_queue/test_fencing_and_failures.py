"""Fencing, retries, dead-lettering, retry from dead, cancel and release."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg

from workerfleet.worker.connector import Connector, connect
from workerfleet.worker.models import EnqueueRequest, Job, JobRef
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import NOTIFY_CHANNEL, Repository

LEASE_SECONDS = 30.0


async def _claim_one(repo: Repository, worker_id: str, queue: str = "q") -> Job:
    [job] = await repo.claim(worker_id, [queue], 1, LEASE_SECONDS)
    return job


async def _expire_lease(connector: Connector, job_id: int) -> None:
    await connector.execute(
        "UPDATE workerfleet.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        job_id,
    )


async def test_rescued_job_cannot_be_finished_by_its_old_holder(
    repo: Repository, connector: Connector
) -> None:
    job_id = await repo.enqueue("q", "t")
    zombie = await _claim_one(repo, "zombie")
    await _expire_lease(connector, job_id)
    assert (await repo.rescue_expired_leases()).rescued == 1
    successor = await _claim_one(repo, "successor")
    assert successor.id == job_id
    assert successor.attempt == zombie.attempt + 1

    assert await repo.complete(zombie.ref, {"from": "zombie"}) is False
    assert await repo.fail(zombie.ref, "late failure", "tb", 0) == "fenced"
    assert await repo.release(zombie.ref) is False
    assert await repo.heartbeat("zombie", [zombie.ref], LEASE_SECONDS, 1, 0, 0) == set()

    assert await repo.heartbeat("successor", [successor.ref], LEASE_SECONDS, 1, 0, 0) == {job_id}
    assert await repo.complete(successor.ref, {"from": "successor"}) is True
    assert await repo.complete(successor.ref, {"from": "again"}) is False
    done = await repo.get_job(job_id)
    assert done is not None
    assert (done.state, done.result, done.worker_id) == (
        "succeeded",
        {"from": "successor"},
        "successor",
    )


async def test_fencing_matches_worker_and_attempt(repo: Repository) -> None:
    await repo.enqueue("q", "t")
    job = await _claim_one(repo, "w1")
    assert await repo.complete(JobRef(job.id, "w2", job.attempt), None) is False
    assert await repo.complete(JobRef(job.id, "w1", job.attempt + 1), None) is False
    assert await repo.fail(JobRef(job.id, "w1", job.attempt - 1), "e", "tb", 0) == "fenced"
    still = await repo.get_job(job.id)
    assert still is not None
    assert still.state == "running"
    assert await repo.complete(job.ref, None) is True


async def test_heartbeat_extends_only_the_leases_still_held(
    repo: Repository, connector: Connector
) -> None:
    await repo.register_worker("w1", "pool", ["q"], "pod-1", "1.0")
    first_id = await repo.enqueue("q", "t")
    second_id = await repo.enqueue("q", "t")
    first, second = await repo.claim("w1", ["q"], 2, 5.0)
    assert await repo.cancel(second_id)
    held = await repo.heartbeat("w1", [first.ref, second.ref], 600.0, 2, 7, 3)
    assert held == {first_id}
    extended = await repo.get_job(first_id)
    assert extended is not None
    assert extended.lease_expires_at is not None
    assert first.lease_expires_at is not None
    assert extended.lease_expires_at - first.lease_expires_at > timedelta(seconds=500)
    [worker] = await repo.list_workers()
    assert (worker.current_jobs, worker.jobs_succeeded, worker.jobs_failed) == (2, 7, 3)
    assert worker.heartbeat_at >= worker.started_at


async def test_failure_retries_with_delay_then_dead_letters_with_error(
    repo: Repository, connector: Connector
) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=2)
    first = await _claim_one(repo, "w1")
    assert await repo.fail(first.ref, "ValueError: bad", "Traceback 1", 120.0) == "retried"
    retried = await repo.get_job(job_id)
    assert retried is not None
    assert (retried.state, retried.attempt, retried.last_error, retried.last_traceback) == (
        "pending",
        1,
        "ValueError: bad",
        "Traceback 1",
    )
    assert retried.finished_at is None
    assert retried.lease_expires_at is None
    db_now = await connector.fetchval("SELECT now()")
    assert timedelta(seconds=110) < retried.run_at - db_now <= timedelta(seconds=120)
    assert await repo.claim("w1", ["q"], 1, LEASE_SECONDS) == []

    await connector.execute("UPDATE workerfleet.jobs SET run_at = now() WHERE id = $1", job_id)
    second = await _claim_one(repo, "w2")
    assert second.attempt == 2
    assert await repo.fail(second.ref, "ValueError: worse", "Traceback 2", 120.0) == "dead"
    dead = await repo.get_job(job_id)
    assert dead is not None
    assert (dead.state, dead.attempt, dead.last_error, dead.last_traceback) == (
        "dead",
        2,
        "ValueError: worse",
        "Traceback 2",
    )
    assert dead.finished_at is not None
    assert await repo.claim("w1", ["q"], 1, LEASE_SECONDS) == []


async def test_retry_from_dead_runs_again_with_attempts_reset(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=1)
    job = await _claim_one(repo, "w1")
    assert await repo.fail(job.ref, "boom", "tb", 0) == "dead"
    assert await repo.retry_dead(job_id) is True
    assert await repo.retry_dead(job_id) is False  # pending now, not dead
    revived = await repo.get_job(job_id)
    assert revived is not None
    assert (revived.state, revived.attempt, revived.finished_at) == ("pending", 0, None)
    again = await _claim_one(repo, "w2")
    assert (again.id, again.attempt) == (job_id, 1)
    assert await repo.complete(again.ref, "ok")
    assert await repo.retry_dead(job_id) is False  # succeeded is not retryable
    assert await repo.retry_dead(987654) is False


async def test_retry_dead_refuses_when_its_unique_key_is_live_again(repo: Repository) -> None:
    dead_id = await repo.enqueue("q", "t", max_attempts=1, unique_key="k")
    job = await _claim_one(repo, "w1")
    assert await repo.fail(job.ref, "boom", "tb", 0) == "dead"
    live_id = await repo.enqueue("q", "t", unique_key="k")
    assert live_id != dead_id
    assert await repo.retry_dead(dead_id) is False
    assert await repo.cancel(live_id)
    assert await repo.retry_dead(dead_id) is True


async def test_cancel_pending_and_running_but_not_finished(repo: Repository) -> None:
    pending_id = await repo.enqueue("q", "t", priority=-1)
    running_id = await repo.enqueue("q", "t")
    running = await _claim_one(repo, "w1")
    assert running.id == running_id
    assert await repo.cancel(pending_id) is True
    assert await repo.cancel(running_id) is True
    assert await repo.complete(running.ref, None) is False
    assert await repo.cancel(running_id) is False
    assert await repo.cancel(123456) is False
    cancelled = await repo.get_job(running_id)
    assert cancelled is not None
    assert cancelled.state == "cancelled"
    assert cancelled.finished_at is not None
    assert await repo.claim("w1", ["q"], 10, LEASE_SECONDS) == []


async def test_release_returns_the_job_without_spending_the_attempt(
    repo: Repository, connector: Connector
) -> None:
    job_id = await repo.enqueue("q", "t", max_attempts=1)
    job = await _claim_one(repo, "w1")
    listener = await connect(connector.dsn)
    woken: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: woken.put_nowait(args[3]))
        assert await repo.release(job.ref) is True
        assert await asyncio.wait_for(woken.get(), timeout=10) == "q"
    finally:
        await listener.close()
    released = await repo.get_job(job_id)
    assert released is not None
    assert (released.state, released.attempt, released.lease_expires_at) == ("pending", 0, None)
    assert await repo.release(job.ref) is False
    again = await _claim_one(repo, "w2")
    assert again.attempt == 1  # max_attempts=1 and it may still run
    assert await repo.complete(again.ref, None)


async def test_concurrent_completions_share_statements_and_stay_fenced(
    connector: Connector,
) -> None:
    counting = await CountingConnector.open(connector.dsn, min_size=1, max_size=4)
    counting.sent = Counter()
    repo = Repository(counting)
    try:
        await _completions_share_statements(repo, counting)
    finally:
        await counting.close()


async def _completions_share_statements(repo: Repository, counting: CountingConnector) -> None:
    ids = await repo.enqueue_many([EnqueueRequest("q", "t", {"n": n}) for n in range(60)])
    jobs = await repo.claim("w1", ["q"], 60, LEASE_SECONDS)
    assert [job.id for job in jobs] == ids
    assert await repo.cancel(ids[0])

    outcomes = await asyncio.gather(
        *(repo.complete(job.ref, {"n": job.payload["n"]}) for job in jobs),
        repo.complete(jobs[1].ref, "duplicate"),
    )

    assert outcomes[0] is False  # cancelled meanwhile: fenced
    assert outcomes[1:-1] == [True] * 59
    assert outcomes[-1] is False  # the same claim completed twice: only once counts
    assert 1 <= counting.sent["complete_many"] < 10  # grouped, not one round trip per job
    done = {job.id: job for job in await repo.list_jobs(state="succeeded", limit=100)}
    assert sorted(done) == ids[1:]
    assert all(done[job.id].result == {"n": job.payload["n"]} for job in jobs[1:])


async def test_complete_many_reports_each_outcome(repo: Repository) -> None:
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(3)])
    first, second, third = await repo.claim("w1", ["q"], 3, LEASE_SECONDS)
    stale = JobRef(second.id, "w1", second.attempt + 1)
    assert await repo.complete_many([(first.ref, 1), (stale, 2), (third.ref, None)]) == [
        True,
        False,
        True,
    ]
    assert await repo.complete_many([(first.ref, 1)]) == [False]
    assert await repo.complete_many([]) == []
    left = await repo.get_job(second.id)
    assert left is not None
    assert left.state == "running"


async def test_a_cancelled_caller_does_not_lose_the_completion(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "t")
    [job] = await repo.claim("w1", ["q"], 1, LEASE_SECONDS)
    caller = asyncio.create_task(repo.complete(job.ref, "kept"))
    await asyncio.sleep(0)
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    state, result = "", None
    for _ in range(100):
        done = await repo.get_job(job_id)
        assert done is not None
        state, result = done.state, done.result
        if state == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert (state, result) == ("succeeded", "kept")


class CountingConnector(Connector):
    """The real connector, counting the statements it sends by query name."""

    sent: Counter[str]

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        names = [name for name, text in QUERIES.items() if text == query]
        self.sent.update(names)
        return await super().fetch(query, *args)


async def test_bury_dead_letters_at_once_and_is_fenced(repo: Repository) -> None:
    job_id = await repo.enqueue("q", "no_such_task", max_attempts=5)
    job = await _claim_one(repo, "w1")
    stale = JobRef(job.id, "w1", job.attempt + 1)
    assert await repo.bury(stale, "UnknownTaskError", "tb") == "fenced"
    assert await repo.bury(job.ref, "UnknownTaskError: no_such_task", "tb") == "dead"
    dead = await repo.get_job(job_id)
    assert dead is not None
    assert (dead.state, dead.attempt, dead.last_error) == (
        "dead",
        1,
        "UnknownTaskError: no_such_task",
    )
    assert dead.finished_at is not None
    assert await repo.bury(job.ref, "again", "tb") == "fenced"
