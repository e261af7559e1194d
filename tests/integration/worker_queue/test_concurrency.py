"""Several claimers on separate connections drain a queue; each job completes once."""

from __future__ import annotations

import asyncio
from collections import Counter

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

JOBS = 5_000
CLAIMERS = 4
BATCH = 16
LEASE_SECONDS = 60.0


async def _drain(dsn: str, worker_id: str, completed: list[int]) -> None:
    """Claim and complete until the queue is empty."""
    connector = await Connector.open(dsn, min_size=1, max_size=2)
    repo = Repository(connector)
    await repo.register_worker(worker_id, "bench", ["drain"], None, None)
    try:
        while True:
            jobs = await repo.claim(worker_id, ["drain"], BATCH, LEASE_SECONDS)
            if not jobs:
                return
            for job in jobs:
                assert job.worker_id == worker_id
                assert job.attempt == 1
                if await repo.complete(job.ref, {"by": worker_id}):
                    completed.append(job.id)
    finally:
        await connector.close()


async def test_claimers_drain_every_job_exactly_once(
    repo: Repository, connector: Connector
) -> None:
    ids: list[int] = []
    for start in range(0, JOBS, 1_000):
        ids += await repo.enqueue_many(
            [EnqueueRequest("drain", "noop", {"n": n}) for n in range(start, start + 1_000)]
        )
    completed: list[int] = []
    await asyncio.gather(
        *(_drain(connector.dsn, f"claimer-{n}", completed) for n in range(CLAIMERS))
    )

    assert len(completed) == JOBS
    assert Counter(completed).most_common(1)[0][1] == 1
    assert set(completed) == set(ids)
    rows = await connector.fetch(
        "SELECT state, attempt, count(*) AS n FROM workerfleet.jobs GROUP BY state, attempt"
    )
    assert [(row["state"], row["attempt"], row["n"]) for row in rows] == [("succeeded", 1, JOBS)]
    by_worker = await connector.fetch(
        "SELECT result->>'by' AS by, count(*) AS n FROM workerfleet.jobs GROUP BY 1"
    )
    assert sum(row["n"] for row in by_worker) == JOBS
    assert len(by_worker) > 1  # the work was actually shared
    [stats] = await repo.queue_stats()
    assert (stats.pending, stats.running, stats.succeeded) == (0, 0, JOBS)
