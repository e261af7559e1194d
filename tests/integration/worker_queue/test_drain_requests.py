"""Drains the operator asks for before a scale-in, against real PostgreSQL: a drained
worker claims nothing, sees its state at its next heartbeat or through a NOTIFY, and a
claim in flight when the drain is asked finishes first and is then visible."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest, PoolWorker
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import WORKERS_CHANNEL, Repository

LEASE_SECONDS = 30.0
POOL = "mail/emails"


async def register(repo: Repository, *worker_ids: str) -> None:
    for worker_id in worker_ids:
        await repo.register_worker(worker_id, POOL, ["q"], f"pod-{worker_id}", "test")


async def test_a_drained_worker_claims_nothing_until_the_drain_is_taken_back(
    repo: Repository,
) -> None:
    await register(repo, "victim", "keeper")
    await repo.enqueue_many([EnqueueRequest("q", "t") for _ in range(4)])

    assert await repo.drain_workers(["victim", "nobody"]) == {"victim"}
    assert await repo.claim("victim", ["q"], 2, LEASE_SECONDS) == []
    assert await repo.claim("victim", ["q", "other"], 2, LEASE_SECONDS) == []  # multi-queue too
    beat = await repo.beat("victim", [], LEASE_SECONDS, 0, 0, 0)
    assert beat.worker_state == "draining"
    assert len(await repo.claim("keeper", ["q"], 1, LEASE_SECONDS)) == 1

    assert await repo.undrain_workers(["victim", "keeper"]) == {"victim"}
    assert (await repo.beat("victim", [], LEASE_SECONDS, 0, 0, 0)).worker_state == "online"
    assert len(await repo.claim("victim", ["q"], 2, LEASE_SECONDS)) == 2


async def test_a_worker_without_a_row_still_claims(repo: Repository) -> None:
    # Queues used without registering (scripts, tests) keep working.
    await repo.enqueue_many([EnqueueRequest("q", "t")])
    assert len(await repo.claim("unregistered", ["q"], 1, LEASE_SECONDS)) == 1
    assert (await repo.beat("unregistered", [], LEASE_SECONDS, 0, 0, 0)).worker_state is None


async def test_a_drain_waits_for_the_claim_in_flight_and_then_sees_its_job(
    repo: Repository, connector: Connector
) -> None:
    await register(repo, "victim")
    await repo.enqueue_many([EnqueueRequest("q", "t")])
    async with connector.transaction() as claiming:
        claimed = await claiming.fetch(
            QUERIES["claim_one_queue"], "victim", "q", 1, LEASE_SECONDS, 5
        )
        assert len(claimed) == 1
        # The claim holds the worker's row: the drain cannot commit before it.
        async with connector.transaction() as draining:
            await draining.execute("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await draining.fetch(QUERIES["drain_workers"], ["victim"])
    # The claim committed; a drain now sees the job it took, exactly.
    assert await repo.drain_workers(["victim"]) == {"victim"}
    assert await repo.running_jobs_of_workers(["victim", "other"]) == {"victim": 1}


async def test_drains_are_notified_on_the_workers_channel(
    repo: Repository, postgres_dsn: str
) -> None:
    await register(repo, "victim")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_dsn)
    try:
        await listener.add_listener(WORKERS_CHANNEL, lambda *args: heard.put_nowait(args[3]))
        await repo.drain_workers(["victim"])
        assert await asyncio.wait_for(heard.get(), 10) == "victim"
        await repo.undrain_workers(["victim"])
        assert await asyncio.wait_for(heard.get(), 10) == "victim"
    finally:
        await listener.close()


async def test_a_drain_of_its_own_is_never_taken_back(repo: Repository) -> None:
    await register(repo, "stopping", "asked")
    await repo.drain_workers(["asked"])
    await repo.set_worker_state("stopping", "draining")  # SIGTERM: the worker's own drain
    await repo.heartbeat("asked", [], LEASE_SECONDS, 1, 0, 0)
    workers = {w.id: w for w in await repo.pool_workers(POOL, dead_after_seconds=60)}
    assert workers == {
        "stopping": PoolWorker("stopping", "pod-stopping", "draining", 0, False),
        "asked": PoolWorker("asked", "pod-asked", "draining", 1, True),
    }
    assert await repo.undrain_workers(["stopping", "asked"]) == {"asked"}
    # A worker asked again after its own shutdown began stays its own.
    assert await repo.drain_workers(["stopping"]) == set()
