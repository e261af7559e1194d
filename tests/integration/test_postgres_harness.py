from __future__ import annotations

import asyncpg

from localcluster.postgres import PostgresServer


async def test_asyncpg_connects(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await connection.fetchval("SELECT 40 + 2") == 42
    finally:
        await connection.close()


async def test_each_test_gets_an_isolated_database(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    writer = await asyncpg.connect(first)
    reader = await asyncpg.connect(second)
    try:
        await writer.execute("CREATE TABLE only_here (id int)")
        seen = await reader.fetchval("SELECT to_regclass('only_here')::text")
        assert seen is None
        assert await writer.fetchval("SELECT to_regclass('only_here')::text") == "only_here"
    finally:
        await writer.close()
        await reader.close()
