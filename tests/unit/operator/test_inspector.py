from __future__ import annotations

import asyncio

import asyncpg
import pytest

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import IDLE_CLOSE_SECONDS, QueueInspector, access_error
from workerfleet.worker.connector import Connector, DatabaseUnavailable

DSN = "postgresql://app:topsecret@127.0.0.1:1/q"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_unreachable_database_is_retried_with_backoff_and_scrubbed() -> None:
    clock = Clock()
    attempts: list[str] = []

    async def opener(dsn: str) -> Connector:
        attempts.append(dsn)
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {dsn}: refused") from OSError(
            f"Connect call failed for {dsn}"
        )

    inspector = QueueInspector(dead_after_seconds=60, opener=opener, clock=clock)
    with pytest.raises(QueueAccessError) as first:
        await inspector.snapshot(DSN)
    assert first.value.reason == reasons.DATABASE_UNREACHABLE
    assert "topsecret" not in first.value.message
    assert DSN not in first.value.message
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 1  # within the backoff: the last error, no new attempt
    clock.now += 1.5
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 2
    clock.now += 1.5  # the second failure backs off for 2 s
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 2
    await inspector.close()


def test_errors_are_classified_by_what_they_mean_for_the_pools() -> None:
    unreachable = access_error(ConnectionResetError(f"lost {DSN}"), DSN, "the query")
    assert unreachable.reason == reasons.DATABASE_UNREACHABLE
    assert "topsecret" not in unreachable.message
    missing = access_error(asyncpg.UndefinedTableError("no jobs"), DSN, "the query")
    assert missing.reason == reasons.QUEUE_SCHEMA_MISSING
    refused = access_error(asyncpg.InsufficientPrivilegeError("permission denied"), DSN, "x")
    assert refused.reason == reasons.QUERY_FAILED
    assert "InsufficientPrivilegeError: permission denied" in refused.message


class FakeConnector:
    def __init__(self, closed: asyncio.Event) -> None:
        self.closed = closed

    async def close(self) -> None:
        self.closed.set()


async def test_the_background_task_closes_databases_nobody_asks_about() -> None:
    clock = Clock()
    closed = asyncio.Event()

    async def opener(dsn: str) -> Connector:
        return FakeConnector(closed)  # type: ignore[return-value]

    inspector = QueueInspector(dead_after_seconds=60, opener=opener, clock=clock)
    await inspector.repository(DSN)
    assert await inspector.close_idle() == 0
    clock.now += IDLE_CLOSE_SECONDS + 1
    task = asyncio.create_task(inspector.close_idle_forever(every_seconds=0.01))
    try:
        await asyncio.wait_for(closed.wait(), timeout=10)
    finally:
        task.cancel()
    assert inspector.databases == 0
