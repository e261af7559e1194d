"""The connector's own connection: calls made one at a time skip the pool,
concurrent ones still run in parallel, and a connection whose state is in
doubt is replaced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from workerfleet.worker import connector as connector_module
from workerfleet.worker.connector import Connector

PID = "SELECT pg_backend_pid()"
BLOCKED = "SELECT pg_advisory_lock(42), pg_backend_pid()"


@pytest.fixture
async def connector(postgres_dsn: str) -> AsyncIterator[Connector]:
    async with await Connector.open(postgres_dsn, min_size=1, max_size=3) as opened:
        yield opened


@pytest.fixture
async def lock_holder(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Holds advisory lock 42, so a call that asks for it blocks until released."""
    connection = await asyncpg.connect(postgres_dsn)
    await connection.execute("SELECT pg_advisory_lock(42)")
    yield connection
    await connection.close()


async def _backend_alive(connection: asyncpg.Connection, pid: int) -> bool:
    return bool(
        await connection.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    )


async def _waiting_for_lock(connection: asyncpg.Connection) -> bool:
    return bool(
        await connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
    )


async def _until(
    check: Callable[[asyncpg.Connection], Awaitable[bool]], connection: asyncpg.Connection
) -> None:
    """Poll the server until ``check`` holds (what it waits for happens there)."""
    while True:
        if await check(connection):
            return
        await asyncio.sleep(0.01)


async def test_calls_one_at_a_time_share_one_connection_outside_the_pool(
    connector: Connector,
) -> None:
    pids = {await connector.fetchval(PID) for _ in range(20)}
    assert len(pids) == 1
    async with connector.pool.acquire() as pooled:
        assert await pooled.fetchval(PID) not in pids


async def test_a_call_made_while_the_own_connection_is_busy_takes_the_pool(
    connector: Connector, lock_holder: asyncpg.Connection
) -> None:
    own_pid = await connector.fetchval(PID)
    blocked = asyncio.create_task(connector.fetchrow(BLOCKED))
    await _until(_waiting_for_lock, lock_holder)
    # The own connection waits for the lock; this call must not wait behind it.
    assert await connector.fetchval(PID) != own_pid
    await lock_holder.execute("SELECT pg_advisory_unlock(42)")
    row = await blocked
    assert row is not None
    assert row["pg_backend_pid"] == own_pid


async def test_a_cancelled_call_replaces_the_own_connection(
    connector: Connector, lock_holder: asyncpg.Connection
) -> None:
    own_pid = await connector.fetchval(PID)
    blocked = asyncio.create_task(connector.fetchrow(BLOCKED))
    await _until(_waiting_for_lock, lock_holder)
    blocked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocked
    # Its backend was mid-statement: the statement is cancelled on the server
    # and the connection closed, never reused (the lock stays held meanwhile).
    assert await connector.fetchval(PID) != own_pid

    async def gone(connection: asyncpg.Connection) -> bool:
        return not await _backend_alive(connection, own_pid)

    await _until(gone, lock_holder)


async def test_a_server_error_keeps_the_own_connection(connector: Connector) -> None:
    own_pid = await connector.fetchval(PID)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await connector.fetchval("SELECT 1 / 0")
    assert await connector.fetchval(PID) == own_pid


async def test_an_own_connection_killed_by_the_server_is_replaced(
    connector: Connector, lock_holder: asyncpg.Connection
) -> None:
    own_pid = await connector.fetchval(PID)
    assert await lock_holder.fetchval("SELECT pg_terminate_backend($1)", own_pid)
    # The call that finds it dead may fail (the caller retries); the next one works.
    with contextlib.suppress(*connector_module.BROKEN_CONNECTION_ERRORS):
        await connector.fetchval(PID)
    assert await connector.fetchval(PID) != own_pid


async def test_close_closes_the_own_connection(
    postgres_dsn: str, lock_holder: asyncpg.Connection
) -> None:
    connector = await Connector.open(postgres_dsn, min_size=1, max_size=2)
    own_pid = await connector.fetchval(PID)
    await connector.close()

    async def gone(connection: asyncpg.Connection) -> bool:
        return not await _backend_alive(connection, own_pid)

    await _until(gone, lock_holder)
