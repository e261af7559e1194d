"""Releasing a pool connection costs no extra round trip, yet leaves nothing behind."""

from __future__ import annotations

from workerfleet.worker.connector import Connector


async def test_a_transaction_left_open_is_rolled_back_on_release(postgres_dsn: str) -> None:
    connector = await Connector.open(postgres_dsn, min_size=1, max_size=1)
    try:
        await connector.execute("CREATE TABLE leftovers (id int)")
        async with connector.pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO leftovers VALUES (1)")
        # max_size=1: this is the same connection, back from the pool.
        async with connector.pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT count(*) FROM leftovers") == 0
    finally:
        await connector.close()


async def test_release_sends_no_reset_statement(postgres_dsn: str) -> None:
    # asyncpg's default reset runs UNLISTEN * (with RESET ALL and more) on every
    # release: a LISTEN surviving a release shows no reset statement was sent. The
    # flip side is why nothing may set session state on pool connections.
    connector = await Connector.open(postgres_dsn, min_size=1, max_size=1)
    try:
        async with connector.pool.acquire() as connection:
            await connection.execute("LISTEN release_probe")
        async with connector.pool.acquire() as connection:
            channels = await connection.fetchval(
                "SELECT array_agg(c) FROM pg_listening_channels() c"
            )
    finally:
        await connector.close()
    assert channels == ["release_probe"]
