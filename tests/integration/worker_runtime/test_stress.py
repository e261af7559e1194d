"""The contended paths at once, hard: several workers at high concurrency with a
short heartbeat, enqueues while they claim, completions, failures and retries,
a shutdown that releases a running job, a hung worker (SIGSTOP) whose leases
expire and which is reaped while its jobs run elsewhere, then wakes up to find
its outcomes fenced, the workers' own fallback rescue, and the Monitor's rescue,
reap and counter fold called from the test in a tight loop. The server must
log no deadlock, and every job must finish exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import signal

import asyncpg

from localcluster.postgres import PostgresServer
from tests.integration.worker_runtime.support import Worker, eventually, wait_ready
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

QUEUE = "runtime"
TOTAL_JOBS = 4000
ENQUEUE_CHUNKS = 4
WORKERS = 4
CONCURRENCY = 16
STRESS_ENV = {
    "WORKERFLEET_HEARTBEAT_INTERVAL": "100ms",
    "WORKERFLEET_LEASE_DURATION": "2s",
    "WORKERFLEET_RESCUE_INTERVAL": "1s",
    "WORKERFLEET_RETRY_BASE": "20ms",
    "WORKERFLEET_RETRY_CAP": "100ms",
    "WORKERFLEET_SHUTDOWN_GRACE": "100ms",
    "WORKERFLEET_LOG_LEVEL": "INFO",
}
# The test's Monitor: short backoffs so a job rescued twice does not sit out the test.
# Longer than the lease: a hung worker's leases expire (rescue) before it is reaped.
REAP_AFTER_SECONDS = 3.0
RESCUE_BACKOFF_SECONDS = 0.05
RESCUE_BACKOFF_CAP_SECONDS = 0.2
RELEASED_JOB_SECONDS = 5.0


def _request(n: int) -> EnqueueRequest:
    """A mix: most jobs succeed at once, a fifth fail their first attempt, a tenth run a while."""
    if n % 10 in (0, 1):
        return EnqueueRequest(QUEUE, "flaky_record", {"n": n}, max_attempts=20)
    if n % 10 == 2:
        return EnqueueRequest(
            QUEUE, "slow_record", {"n": n, "seconds": 0.05 * (n % 7)}, max_attempts=20
        )
    return EnqueueRequest(QUEUE, "record", {"n": n}, max_attempts=20)


class Monitor:
    """What the operator's Monitor does, as fast as it can, until stopped."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.stop = asyncio.Event()
        self.rounds = self.rescued = self.reaped_workers = self.released = self.folded = 0

    async def run(self) -> None:
        while not self.stop.is_set():
            rescue = await self.repository.rescue_expired_leases(
                RESCUE_BACKOFF_SECONDS, RESCUE_BACKOFF_CAP_SECONDS
            )
            reap = await self.repository.reap_dead_workers(
                REAP_AFTER_SECONDS, RESCUE_BACKOFF_SECONDS, RESCUE_BACKOFF_CAP_SECONDS
            )
            self.folded += await self.repository.fold_job_counts()
            self.rounds += 1
            self.rescued += rescue.rescued
            self.reaped_workers += reap.workers
            self.released += reap.jobs_released
            await asyncio.sleep(0)


async def test_contended_paths_under_load_log_no_deadlock_and_finish_every_job_once(
    own_postgres: PostgresServer,
    own_queue_dsn: str,
    workers: list[Worker],
) -> None:
    dsn = own_queue_dsn
    db = await asyncpg.connect(dsn)
    repository_connector = await Connector.open(dsn, min_size=1, max_size=4)
    repository = Repository(repository_connector)
    monitor = Monitor(repository)
    monitoring = asyncio.create_task(monitor.run())
    try:
        fleet = [Worker(dsn, concurrency=CONCURRENCY, extra_env=STRESS_ENV) for _ in range(WORKERS)]
        workers.extend(worker.start() for worker in fleet)
        for worker in fleet:
            await wait_ready(worker)

        # One long job, to be released by a shutdown while it runs.
        released_id = await repository.enqueue(
            QUEUE, "slow_record", {"seconds": RELEASED_JOB_SECONDS}, priority=10, max_attempts=20
        )
        chunk = TOTAL_JOBS // ENQUEUE_CHUNKS
        ids: list[int] = [released_id]
        for start in range(0, TOTAL_JOBS - 1, chunk):
            stop = min(start + chunk, TOTAL_JOBS - 1)
            ids += await repository.enqueue_many([_request(n) for n in range(start, stop)])
        assert len(set(ids)) == TOTAL_JOBS

        holder = await eventually(
            lambda: _holder_of(db, released_id), "the long job to start", within=120
        )
        [stopping] = [worker for worker in fleet if f"-{worker.pid}-" in holder]
        stopping.signal(signal.SIGTERM)
        assert stopping.wait_exit() == 0
        replacement = Worker(dsn, concurrency=CONCURRENCY, extra_env=STRESS_ENV)
        workers.append(replacement.start())
        running = [worker for worker in fleet if worker is not stopping] + [replacement]

        hung = running[0]
        hung.signal(signal.SIGSTOP)
        try:
            await eventually(
                lambda: _rescued_and_reaped(db, hung.pid),
                "the hung worker's jobs to be rescued and the worker reaped",
                within=120,
            )
        finally:
            hung.signal(signal.SIGCONT)

        async def all_succeeded() -> bool:
            done = await db.fetchval(
                "SELECT count(*) FROM workerfleet.jobs WHERE state = 'succeeded'"
            )
            return bool(done == TOTAL_JOBS)

        await eventually(all_succeeded, f"all {TOTAL_JOBS} jobs to succeed", within=240)
        conflicts = sum(
            worker.metric("workerfleet_worker_database_conflicts_total") for worker in running
        )
        fallback_rescued = sum(
            worker.metric("workerfleet_worker_fallback_rescued_jobs_total") for worker in running
        )
    finally:
        monitor.stop.set()
        await monitoring
    for worker in running:
        worker.signal(signal.SIGTERM)
    assert [worker.wait_exit() for worker in running] == [0] * len(running)

    rows = await db.fetch("SELECT id, state, payload, result FROM workerfleet.jobs")
    assert len(rows) == TOTAL_JOBS
    assert all(row["state"] == "succeeded" and row["result"] == row["payload"] for row in rows)
    # Exactly once: every job's success was recorded by one worker, once.
    successes = collections.Counter(
        event["job_id"]
        for worker in [*fleet, replacement]
        for event in worker.log_events()
        if event["message"] == "job succeeded"
    )
    assert set(successes) == set(ids)
    assert set(successes.values()) == {1}
    runs: dict[int, int] = {
        row["job_id"]: row["runs"]
        for row in await db.fetch(
            "SELECT job_id, count(*) AS runs FROM runtime_test.side_effects GROUP BY 1"
        )
    }
    assert set(runs) == set(ids)
    flaky = await db.fetch("SELECT id FROM workerfleet.jobs WHERE task = 'flaky_record'")
    assert flaky
    assert all(runs[row["id"]] >= 2 for row in flaky)
    released_events = [
        event for event in stopping.log_events() if event["message"].startswith("job released")
    ]
    assert released_id in {event["job_id"] for event in released_events}
    assert all(row.drift == 0 for row in await repository.recount_jobs())
    fenced = sum(
        1
        for event in hung.log_events()
        if event["message"].startswith("outcome dropped") and event["job_id"] in successes
    )

    server_log = own_postgres.log_file.read_text(errors="replace")
    deadlocks = server_log.count("deadlock detected")
    lock_waits = server_log.count("still waiting for")
    print(
        f"stress: {TOTAL_JOBS} jobs, {WORKERS} workers x {CONCURRENCY} (+1 replacement), "
        f"heartbeat 100ms; monitor rounds {monitor.rounds}, rescued {monitor.rescued}, "
        f"workers reaped {monitor.reaped_workers} (jobs released {monitor.released}), "
        f"counter rows folded {monitor.folded}; fallback rescued {fallback_rescued:.0f}; "
        f"jobs released at shutdown {len(released_events)}; "
        f"handler runs {sum(runs.values())}; outcomes fenced on the hung worker {fenced}; "
        f"conflicts retried {conflicts:.0f}; "
        f"lock waits > 100 ms logged {lock_waits}; deadlocks logged {deadlocks}"
    )
    assert deadlocks == 0, _deadlock_reports(server_log)
    await repository_connector.close()
    await db.close()


async def _holder_of(db: asyncpg.Connection, job_id: int) -> str | None:
    row = await db.fetchrow(
        "SELECT worker_id FROM workerfleet.jobs WHERE id = $1 AND state = 'running'", job_id
    )
    return None if row is None else str(row["worker_id"])


async def _rescued_and_reaped(db: asyncpg.Connection, pid: int) -> bool:
    """Some job rescued after its lease expired, and the worker of ``pid`` marked dead."""
    rescued = await db.fetchval(
        "SELECT count(*) FROM workerfleet.jobs WHERE rescues > 0 AND last_error LIKE $1",
        f"lease expired on worker %-{pid}-%",
    )
    state = await db.fetchval(
        "SELECT state FROM workerfleet.workers WHERE id LIKE $1", f"%-{pid}-%"
    )
    return bool(rescued) and state == "dead"


def _deadlock_reports(server_log: str) -> str:
    lines = server_log.splitlines()
    return "\n".join(
        "\n".join(lines[index : index + 30])
        for index, line in enumerate(lines)
        if "deadlock detected" in line
    )
