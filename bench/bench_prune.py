"""``make bench-prune``: claim latency while retention prunes 100,000 finished jobs.

A Monitor's retention deletes finished jobs in committed batches
(``Repository.prune_finished``, ``PRUNE_BATCH_ROWS`` rows per statement), so
whatever it locks (the jobs it deletes, the per-(queue, state) counter rows
its statement trigger updates, which completions update too) is held for one
batch only. This measures what workers feel meanwhile:

1. a throwaway PostgreSQL with 100,000 succeeded jobs finished two days ago
   and a backlog of pending jobs in the same queue;
2. ``CLAIMERS`` loops (16: most of the counters' 16 slots are in use, so a
   completion can meet the prune on a counter row), each claiming one job and
   completing it, timing each claim and each completion;
3. per batch size: the loops alone for ``BASELINE_SECONDS``, then the loops
   while ``prune_finished`` deletes the 100,000 rows; the rows are loaded
   again before the next batch size.

Prints p50 / p99 / max claim and completion latency without and during each
prune, and how long each prune took. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Appended, not prepended: the repository's operator/ folder must not shadow the stdlib.
sys.path.append(str(REPO))

from localcluster.postgres import PostgresServer  # noqa: E402
from workerfleet.worker.connector import Connector  # noqa: E402
from workerfleet.worker.migrations import migrate  # noqa: E402
from workerfleet.worker.repository import PRUNE_BATCH_ROWS, Repository  # noqa: E402

QUEUE = "bench"
FINISHED_ROWS = 100_000
PENDING_ROWS = 200_000
CLAIMERS = 16
LEASE_SECONDS = 60.0
BASELINE_SECONDS = 5.0
# The default batch, a larger one, and the whole prune in one statement (no batching).
BATCH_SIZES = (PRUNE_BATCH_ROWS, 10_000, FINISHED_ROWS)
DAY_SECONDS = 86_400.0


@dataclass
class Latencies:
    claims: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


def figures(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
        f"max {ordered[-1] * 1000:7.2f} ms  (n={len(ordered)})"
    )


async def load_finished(connector: Connector) -> None:
    await connector.execute(
        "INSERT INTO workerfleet.jobs (queue, task, state, attempt, max_attempts, "
        "run_at, started_at, finished_at, worker_id) "
        "SELECT $1, 'noop', 'succeeded', 1, 5, now() - interval '3 days', "
        "now() - interval '3 days', now() - interval '2 days', 'old-worker' "
        "FROM generate_series(1, $2)",
        QUEUE,
        FINISHED_ROWS,
    )
    await connector.execute("VACUUM ANALYZE workerfleet.jobs")


async def load_pending(connector: Connector) -> None:
    await connector.execute(
        "INSERT INTO workerfleet.jobs (queue, task) SELECT $1, 'noop' FROM generate_series(1, $2)",
        QUEUE,
        PENDING_ROWS,
    )
    await connector.execute("VACUUM ANALYZE workerfleet.jobs")


async def claim_loop(repository: Repository, worker: str, stop: asyncio.Event) -> Latencies:
    seen = Latencies()
    while not stop.is_set():
        started = time.perf_counter()
        jobs = await repository.claim(worker, [QUEUE], 1, LEASE_SECONDS)
        claimed = time.perf_counter()
        seen.claims.append(claimed - started)
        for job in jobs:
            await repository.complete_many([(job.ref, None)])
            seen.completions.append(time.perf_counter() - claimed)
    return seen


async def measure(repository: Repository, during: asyncio.Future[float] | None) -> Latencies:
    """The claim loops, for BASELINE_SECONDS or until ``during`` (a prune) is done."""
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(claim_loop(repository, f"bench-{n}", stop)) for n in range(CLAIMERS)
    ]
    if during is None:
        await asyncio.sleep(BASELINE_SECONDS)
    else:
        await during
    stop.set()
    merged = Latencies()
    for seen in await asyncio.gather(*loops):
        merged.claims += seen.claims
        merged.completions += seen.completions
    return merged


async def timed_prune(repository: Repository, batch_rows: int) -> float:
    started = time.perf_counter()
    deleted = await repository.prune_finished(
        DAY_SECONDS, ["succeeded"], queues=[QUEUE], batch_rows=batch_rows
    )
    elapsed = time.perf_counter() - started
    if deleted < FINISHED_ROWS:
        say(f"  (pruned only {deleted} rows: the claim loops' own jobs are too recent)")
    return elapsed


async def run(dsn: str) -> None:
    await migrate(dsn)
    async with await Connector.open(dsn, min_size=CLAIMERS + 2, max_size=CLAIMERS + 2) as conn:
        repository = Repository(conn)
        await load_pending(conn)
        for batch_rows in BATCH_SIZES:
            await load_finished(conn)
            baseline = await measure(repository, None)
            prune = asyncio.ensure_future(timed_prune(repository, batch_rows))
            during = await measure(repository, prune)
            batches = -(-FINISHED_ROWS // batch_rows)
            say(
                f"\nbatch {batch_rows:,} rows ({batches} statements): "
                f"pruned {FINISHED_ROWS:,} rows in {prune.result():.2f}s"
            )
            say(f"  claim       without prune: {figures(baseline.claims)}")
            say(f"  claim       during prune:  {figures(during.claims)}")
            say(f"  completion  without prune: {figures(baseline.completions)}")
            say(f"  completion  during prune:  {figures(during.completions)}")


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="workerfleet-bench-prune-"))
    server = PostgresServer(base / "pg")
    server.start()
    try:
        dsn = server.create_database("bench")
        say(
            f"PostgreSQL {server.psql('SHOW server_version')}; {CLAIMERS} claim loops; "
            f"{FINISHED_ROWS:,} finished and {PENDING_ROWS:,} pending jobs in one queue"
        )
        asyncio.run(run(dsn))
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
