"""Many pools on two real databases: one stats query per database per round, NOTIFYs and
drains reach every pool, and the queries do not grow with the number of pools."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from localcluster.postgres import PostgresServer
from localcluster.waiting import wait_for_async
from workerfleet.operator.inspector import QueueInspector
from workerfleet.operator.queue_events import QueueEvent, QueueEvents
from workerfleet.operator.stats_rounds import StatsRounds
from workerfleet.operator.triggers import Triggers, Work
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

POOLS_PER_DATABASE = 100
ROUND_SECONDS = 0.2


@dataclass
class Pool:
    dsn: str
    queue: str
    pending: list[int] = field(default_factory=list)
    """What each of its syncs read, in order."""
    stale: int = 0
    """Syncs for a NOTIFY that read a snapshot older than the NOTIFY (must stay 0)."""


async def enqueue_everywhere(dsn: str, queues: list[str]) -> list[int]:
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        requests = [EnqueueRequest(queue=queue, task="echo", payload={}) for queue in queues]
        return await Repository(connector).enqueue_many(requests)  # one commit, many NOTIFYs


async def cancel(dsn: str, ids: list[int]) -> None:
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        for job_id in ids:
            await Repository(connector).cancel(job_id)  # no NOTIFY: only a round sees it


async def test_many_pools_cost_one_query_per_database_per_round(
    postgres_server: PostgresServer,
) -> None:
    dsns = [postgres_server.create_database() for _ in range(2)]
    for dsn in dsns:
        await migrate(dsn)
    inspector = QueueInspector(dead_after_seconds=60)
    pools = {
        f"{d}-{i}": Pool(dsn, f"q{i}")
        for d, dsn in enumerate(dsns)
        for i in range(POOLS_PER_DATABASE)
    }

    async def sync(key: Hashable, work: Work) -> None:
        pool = pools[str(key)]
        snapshot = await inspector.snapshot(pool.dsn, work.since)
        if work.since is not None and snapshot.started_at < work.since:
            pool.stale += 1
        stats = snapshot.queues.get(pool.queue)
        pool.pending.append(stats.pending if stats is not None else 0)

    triggers = Triggers(sync)
    rounds = StatsRounds(inspector, lambda key, _: triggers.poke(key, "queue"), ROUND_SECONDS)
    events = QueueEvents()
    for key, pool in pools.items():

        def on_event(event: QueueEvent, key: str = key) -> None:
            triggers.poke(key, "notify", event.received_at)

        events.subscribe(key, pool.dsn, pool.queue, on_event)
        rounds.attach(key, pool.dsn, pool.queue, f"ns/{pool.queue}")
    try:
        await wait_for_async(
            "LISTEN on both databases",
            lambda: all(events.connected(dsn) for dsn in dsns),
            timeout=30,
        )
        # The first round pokes every pool (nothing seen yet); their syncs share its snapshot.
        await wait_for_async(
            "every pool's first sync", lambda: all(p.pending for p in pools.values()), timeout=30
        )
        await wait_for_async(
            "five rounds on each database",
            lambda: all(rounds.rounds(dsn) >= 5 for dsn in dsns),
            timeout=30,
        )
        for dsn in dsns:
            assert inspector.queries(dsn) <= rounds.rounds(dsn)
        # Read by their rounds, the pools need no poll of their own.
        assert all(rounds.covers(key, time.monotonic()) for key in pools)
        at_rest = {dsn: (inspector.queries(dsn), rounds.rounds(dsn)) for dsn in dsns}

        ids = {
            dsn: await enqueue_everywhere(dsn, [f"q{i}" for i in range(POOLS_PER_DATABASE)])
            for dsn in dsns
        }
        await wait_for_async(
            "every pool to read its job",
            lambda: all(p.pending[-1] == 1 for p in pools.values()),
            timeout=30,
        )
        for dsn in dsns:
            await cancel(dsn, ids[dsn])
        await wait_for_async(
            "every pool to read the drain (no NOTIFY: the rounds found it)",
            lambda: all(p.pending[-1] == 0 for p in pools.values()),
            timeout=30,
        )
        assert sum(p.stale for p in pools.values()) == 0
        for dsn in dsns:
            queries = inspector.queries(dsn) - at_rest[dsn][0]
            rounds_run = rounds.rounds(dsn) - at_rest[dsn][1]
            # A hundred pools notified at once share the queries their NOTIFYs ask for: a
            # couple more than the rounds, never one per pool.
            assert queries <= rounds_run + 2, (queries, rounds_run)
            print(f"{dsn[-12:]}: {queries} stats queries for {rounds_run} rounds, 100 pools")
    finally:
        await triggers.close()
        await rounds.close()
        await events.close()
        await inspector.close()
