"""Migrations: baseline + migrations == schema.sql, idempotence, concurrent starts."""

from __future__ import annotations

import asyncio
import difflib
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from localcluster.postgres import PASSWORD, PG_BIN_DIR, PostgresServer
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import available_migrations, migrate
from workerfleet.worker.queries import sql_text

MIGRATE_PROGRAM = (
    "import asyncio, sys\n"
    "from workerfleet.worker.migrations import migrate\n"
    "print(','.join(asyncio.run(migrate(sys.argv[1]))) or 'none')\n"
)


def _schema_dump(dsn: str) -> str:
    """pg_dump of the workerfleet schema, without comments, blank lines and the
    per-dump random ``\\restrict`` key."""
    result = subprocess.run(
        [str(PG_BIN_DIR / "pg_dump"), "--schema-only", "--schema=workerfleet", "--no-owner", dsn],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": PASSWORD},
    )
    lines = [
        line
        for line in result.stdout.splitlines()
        if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    return "\n".join(lines)


async def test_migrations_build_exactly_schema_sql(postgres_server: PostgresServer) -> None:
    migrated_dsn = postgres_server.create_database()
    reference_dsn = postgres_server.create_database()
    applied = await migrate(migrated_dsn)
    assert applied == [migration.version for migration in available_migrations()]
    assert len(applied) >= 2

    connection = await asyncpg.connect(reference_dsn)
    try:
        await connection.execute(sql_text("schema.sql"))
    finally:
        await connection.close()

    migrated, reference = _schema_dump(migrated_dsn), _schema_dump(reference_dsn)
    assert "CREATE TABLE workerfleet.jobs" in reference
    assert "CREATE FUNCTION workerfleet.enqueue" in reference
    drift = "\n".join(
        difflib.unified_diff(reference.splitlines(), migrated.splitlines(), lineterm="")
    )
    assert migrated == reference, f"migrations drift from schema.sql:\n{drift}"


async def test_migrate_is_idempotent(postgres_dsn: str) -> None:
    first = await migrate(postgres_dsn)
    assert first
    connector = await Connector.open(postgres_dsn)
    try:
        assert await migrate(connector) == []
        recorded = await connector.fetch(
            "SELECT version FROM workerfleet.schema_migrations ORDER BY version"
        )
        assert [row["version"] for row in recorded] == first
    finally:
        await connector.close()


async def test_concurrent_migrations_on_separate_connections(postgres_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(postgres_dsn) for _ in range(4)))
    expected = [migration.version for migration in available_migrations()]
    assert sorted(results, key=len) == [[], [], [], expected]


def test_two_processes_migrating_at_once_both_succeed(postgres_dsn: str, tmp_path: Path) -> None:
    # cwd outside the repository: its operator/ folder would shadow the stdlib module.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_PROGRAM, postgres_dsn],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outcomes
    printed = sorted(stdout.strip() for stdout, _ in outcomes)
    expected = ",".join(migration.version for migration in available_migrations())
    assert printed == sorted([expected, "none"])
