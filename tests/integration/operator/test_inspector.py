"""The queue inspector against a real PostgreSQL: one stats query per database, shared
by every pool on it; errors that never show the password."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest
from prometheus_client import REGISTRY

from localcluster.postgres import PostgresServer
from localcluster.waiting import wait_for
from workerfleet.operator import metrics, reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import IDLE_CLOSE_SECONDS, QueueInspector
from workerfleet.operator.monitor import pool_facts
from workerfleet.operator.selection import PoolRef
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository


def queries(result: str) -> float:
    value = REGISTRY.get_sample_value(f"{metrics.PREFIX}_stats_queries_total", {"result": result})
    return float(value or 0.0)


async def seed(dsn: str) -> None:
    await migrate(dsn)
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        repository = Repository(connector)
        for _ in range(3):
            await repository.enqueue("emails", "echo", {})
        await repository.enqueue("reports", "echo", {})
        await repository.register_worker("w-1", "mail/emails", ["emails"], "pod-1", "0")
        await repository.register_worker("w-2", "mail/emails", ["emails"], "pod-2", "0")


async def test_concurrent_pools_share_one_query(postgres_dsn: str) -> None:
    await seed(postgres_dsn)
    inspector = QueueInspector(dead_after_seconds=60)
    before = queries("ok")
    snapshots = await asyncio.gather(*(inspector.snapshot(postgres_dsn) for _ in range(8)))
    assert queries("ok") - before == 1
    assert all(s is snapshots[0] for s in snapshots)
    snapshot = snapshots[0]
    assert snapshot.queues["emails"].pending == 3
    assert snapshot.queues["reports"].pending == 1
    assert snapshot.workers["mail/emails"].online == 2
    assert inspector.databases == 1
    await inspector.close()


async def test_missing_schema_is_reported_as_such(postgres_dsn: str) -> None:
    inspector = QueueInspector(dead_after_seconds=60)
    with pytest.raises(QueueAccessError) as caught:
        await inspector.snapshot(postgres_dsn)
    assert caught.value.reason == reasons.QUEUE_SCHEMA_MISSING
    await migrate(postgres_dsn)
    snapshot = await inspector.snapshot(postgres_dsn)  # asked again at once, no backoff
    assert snapshot.queues == {}
    await inspector.close()


async def test_wrong_password_never_shows_the_password(postgres_server: PostgresServer) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    dsn = f"postgresql://nobody:{password}@{postgres_server.host}:{postgres_server.port}/postgres"
    inspector = QueueInspector(dead_after_seconds=60)
    with pytest.raises(QueueAccessError) as caught:
        await inspector.snapshot(dsn)
    assert caught.value.reason == reasons.DATABASE_UNREACHABLE
    assert password not in caught.value.message
    assert dsn not in caught.value.message
    assert "nobody" in caught.value.message  # the user name helps and is no secret
    await inspector.close()


async def test_a_broken_database_backs_off_without_affecting_others(postgres_dsn: str) -> None:
    await seed(postgres_dsn)
    now = [1000.0]
    inspector = QueueInspector(dead_after_seconds=60, max_age_seconds=0.0, clock=lambda: now[0])
    assert (await inspector.snapshot(postgres_dsn)).queues["emails"].pending == 3
    broken = postgres_dsn.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(broken)
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(broken)  # during the backoff: no new attempt, same error
    assert (await inspector.snapshot(postgres_dsn)).queues["emails"].pending == 3
    now[0] += 60
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(broken)  # retried after the backoff, still broken
    await inspector.close()


async def test_a_rotated_dsn_leaves_no_pool_behind(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    await seed(postgres_dsn)
    database = urlsplit(postgres_dsn).path.lstrip("/")
    role, password = f"r_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres_server.psql(
        f"GRANT USAGE ON SCHEMA workerfleet TO {role}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA workerfleet TO {role}",
        database=database,
    )
    before = (
        f"postgresql://{role}:{password}@{postgres_server.host}:{postgres_server.port}/{database}"
    )

    def connections_of_the_old_role() -> int:
        query = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
        return int(postgres_server.psql(query))

    now = [1000.0]
    inspector = QueueInspector(dead_after_seconds=60, max_age_seconds=0.0, clock=lambda: now[0])
    assert (await inspector.snapshot(before)).queues["emails"].pending == 3
    assert connections_of_the_old_role() >= 1
    now[0] += IDLE_CLOSE_SECONDS / 2
    # The Secret now names the other DSN: the pools ask with that one from here on.
    assert (await inspector.snapshot(postgres_dsn)).queues["emails"].pending == 3
    assert await inspector.close_idle() == 0  # not idle long enough yet
    now[0] += IDLE_CLOSE_SECONDS / 2 + 1
    assert (await inspector.snapshot(postgres_dsn)).queues["emails"].pending == 3
    assert await inspector.close_idle() == 1
    assert inspector.databases == 1
    wait_for(
        "the old DSN's connections to end",
        lambda: connections_of_the_old_role() == 0,
        timeout=10,
        interval=0.1,
    )
    assert (await inspector.snapshot(postgres_dsn)).queues["emails"].pending == 3
    await inspector.close()


class CountingConnector(Connector):
    """A real connector that notes the name of every named query it runs."""

    ran: list[str]

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.ran.append(next((n for n, q in QUERIES.items() if q == query), "unnamed"))
        return await super().fetch(query, *args)


async def test_the_rules_read_failures_from_the_same_one_query(postgres_dsn: str) -> None:
    await seed(postgres_dsn)
    async with await Connector.open(postgres_dsn, min_size=1, max_size=1) as connector:
        repository = Repository(connector)
        jobs = await repository.claim("w-1", ["emails"], 3, lease_seconds=60)
        for job in jobs[:2]:
            await repository.fail(job.ref, "boom", None, retry_delay_seconds=0)
    ran: list[str] = []

    async def opener(dsn: str) -> Connector:
        opened = await Connector.open(dsn, min_size=1, max_size=2)
        counting = CountingConnector(dsn, opened.pool)
        counting.ran = ran
        return counting

    inspector = QueueInspector(dead_after_seconds=60, opener=opener)
    # Eight pools' ticks and a Monitor's run, all at once, on one database.
    snapshots = await asyncio.gather(*(inspector.snapshot(postgres_dsn) for _ in range(9)))
    assert ran == ["queue_stats", "worker_stats"]
    ref = PoolRef("emails", {}, "queue-db", "dsn", queue="emails", concurrency=4, ceiling=2)
    facts = pool_facts(ref, "mail", snapshots[-1])
    assert facts.queue is not None
    assert facts.workers is not None
    assert facts.queue.failed_within(15) == 2
    assert facts.workers.running_jobs == 1
    await inspector.close()
