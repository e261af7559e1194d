"""Schema migrations: the numbered files in ``sql/migrations/``, applied in order.

All of one run happens in a single transaction holding a transaction-level
advisory lock, so processes starting together (every worker migrates at
start) queue up on the lock; the later ones find everything applied and do
nothing. A failing migration rolls the whole run back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from workerfleet.worker import queries
from workerfleet.worker.connector import Connector
from workerfleet.worker.queries import QUERIES

# Any fixed bigint shared by every workerfleet process: "wfmigrat" in ASCII.
MIGRATION_LOCK_KEY = 0x77666D6967726174
MIGRATIONS_DIR = "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    folder = resources.files(queries.SQL_PACKAGE).joinpath("sql", MIGRATIONS_DIR)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


def pending_migrations(available: list[Migration], applied: set[str]) -> list[Migration]:
    return [migration for migration in available if migration.version not in applied]


async def migrate(target: Connector | str) -> list[str]:
    """Apply what is missing; returns the versions applied by this call (often none)."""
    if isinstance(target, str):
        connector = await Connector.open(target, min_size=1, max_size=1)
        try:
            return await _migrate(connector)
        finally:
            await connector.close()
    return await _migrate(target)


async def _migrate(connector: Connector) -> list[str]:
    async with connector.transaction() as connection:
        await connection.execute(QUERIES["migrations_lock"], MIGRATION_LOCK_KEY)
        await connection.execute(QUERIES["migrations_bootstrap"])
        applied = {row["version"] for row in await connection.fetch(QUERIES["migrations_applied"])}
        done: list[str] = []
        for migration in pending_migrations(available_migrations(), applied):
            await connection.execute(migration.sql)
            await connection.execute(QUERIES["migrations_record"], migration.version)
            done.append(migration.version)
        return done
