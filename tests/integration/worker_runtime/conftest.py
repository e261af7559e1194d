from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from localcluster.postgres import PostgresServer
from tests.integration.worker_runtime import runtime_tasks
from tests.integration.worker_runtime.support import Worker
from workerfleet.worker import migrations
from workerfleet.worker.connector import Connector, connect
from workerfleet.worker.repository import Repository


@pytest.fixture
async def queue_dsn(postgres_dsn: str) -> str:
    """A fresh database with the queue schema and the side-effects table."""
    await migrations.migrate(postgres_dsn)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(runtime_tasks.SIDE_EFFECTS_DDL)
    finally:
        await connection.close()
    return postgres_dsn


@pytest.fixture
async def repository(queue_dsn: str) -> AsyncIterator[Repository]:
    connector = await Connector.open(queue_dsn, min_size=1, max_size=4)
    try:
        yield Repository(connector)
    finally:
        await connector.close()


@pytest.fixture
async def db(queue_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the test's own checks, decoding json like the worker does."""
    connection = await connect(queue_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Register started workers here; every one is stopped at the end of the test."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()
        # Shown by pytest only when the test failed.
        print(f"--- worker on port {worker.port} ---\n{worker.logs()[-6000:]}")
        worker.log_path.unlink(missing_ok=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone: it may be stopped and restarted,
    and its log holds only this test's lock waits and deadlock reports."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="workerfleet-pg-")) / "pg")
    server.start()
    server.psql("ALTER SYSTEM SET log_lock_waits = on")
    # Checked sooner than the default 1 s: a deadlock is found (and logged) faster,
    # and lock waits longer than this are logged.
    server.psql("ALTER SYSTEM SET deadlock_timeout = '100ms'")
    server.psql("SELECT pg_reload_conf()")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def own_queue_dsn(own_postgres: PostgresServer) -> str:
    """As queue_dsn, on the test's own server."""
    dsn = own_postgres.create_database()
    await migrations.migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(runtime_tasks.SIDE_EFFECTS_DDL)
    finally:
        await connection.close()
    return dsn
