"""A migrated database and a Repository over it, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.repository import Repository


@pytest.fixture
async def connector(postgres_dsn: str) -> AsyncIterator[Connector]:
    await migrate(postgres_dsn)
    opened = await Connector.open(postgres_dsn, min_size=1, max_size=4)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def repo(connector: Connector) -> Repository:
    return Repository(connector)
