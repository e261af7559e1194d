"""Connector.transaction: statements that commit together, or not at all."""

from __future__ import annotations

import pytest

from workerfleet.worker.connector import Connector


async def test_a_transaction_commits_when_its_block_ends(postgres_dsn: str) -> None:
    async with await Connector.open(postgres_dsn, min_size=1, max_size=2) as connector:
        await connector.execute("CREATE TABLE ledger (id int)")
        async with connector.transaction() as connection:
            await connection.execute("INSERT INTO ledger VALUES (1)")
            await connection.execute("INSERT INTO ledger VALUES (2)")
            # Not visible outside the transaction until it commits.
            assert await connector.fetchval("SELECT count(*) FROM ledger") == 0
        assert await connector.fetchval("SELECT count(*) FROM ledger") == 2


async def test_a_transaction_rolls_back_when_its_block_raises(postgres_dsn: str) -> None:
    async with await Connector.open(postgres_dsn, min_size=1, max_size=1) as connector:
        await connector.execute("CREATE TABLE ledger (id int)")

        async def insert_then_raise() -> None:
            async with connector.transaction() as connection:
                await connection.execute("INSERT INTO ledger VALUES (1)")
                raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError, match="changed my mind"):
            await insert_then_raise()
        assert await connector.fetchval("SELECT count(*) FROM ledger") == 0
