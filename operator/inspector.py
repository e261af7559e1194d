"""The queue inspector: one shared asyncpg pool and one stats query per database.

Every WorkerPool on the same database gets its figures from the same snapshot:
concurrent timer ticks for pools on one database wait for the single query in
flight, and a snapshot younger than ``max_age_seconds`` is reused. A database
that cannot be reached is retried with exponential backoff; until then the
last error is returned at once, so a dead database costs nothing per tick and
never delays pools on other databases.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from workerfleet.operator import errors, metrics, reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.worker.connector import Connector, DatabaseUnavailable
from workerfleet.worker.models import QueueStats, WorkerStats
from workerfleet.worker.repository import Repository

STATS_MAX_AGE_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
IDLE_CLOSE_SECONDS = 600.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
SCHEMA_ERRORS = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)

logger = logging.getLogger(__name__)

Opener = Callable[[str], Awaitable[Connector]]


async def open_connector(dsn: str) -> Connector:
    return await Connector.open(dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE)


@dataclass(frozen=True)
class Snapshot:
    queues: dict[str, QueueStats]
    workers: dict[str, WorkerStats]
    taken_at: float


def backoff_seconds(failures: int) -> float:
    """1, 2, 4, ... seconds after consecutive failures, capped."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_BASE_SECONDS * 2.0 ** (failures - 1), BACKOFF_CAP_SECONDS))


@dataclass
class _Database:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connector: Connector | None = None
    snapshot: Snapshot | None = None
    failures: int = 0
    retry_at: float = 0.0
    error: QueueAccessError | None = None
    used_at: float = 0.0


class QueueInspector:
    def __init__(
        self,
        *,
        dead_after_seconds: float,
        max_age_seconds: float = STATS_MAX_AGE_SECONDS,
        opener: Opener = open_connector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dead_after_seconds = dead_after_seconds
        self.max_age_seconds = max_age_seconds
        self._opener = opener
        self._clock = clock
        self._databases: dict[str, _Database] = {}

    async def snapshot(self, dsn: str) -> Snapshot:
        """Fresh-enough stats of the database at ``dsn``; raises QueueAccessError."""
        database = self._databases.setdefault(dsn, _Database())
        database.used_at = self._clock()
        async with database.lock:
            now = self._clock()
            fresh = database.snapshot
            if fresh is not None and now - fresh.taken_at < self.max_age_seconds:
                return fresh
            if database.error is not None and now < database.retry_at:
                raise database.error
            try:
                database.snapshot = await self._query(dsn, database)
            except QueueAccessError as error:
                database.snapshot = None
                metrics.STATS_QUERIES.labels(result="error").inc()
                if error.reason != reasons.QUEUE_SCHEMA_MISSING:  # that one is asked again
                    database.failures += 1
                    database.retry_at = now + backoff_seconds(database.failures)
                    database.error = error
                raise
            database.failures = 0
            database.error = None
            metrics.STATS_QUERIES.labels(result="ok").inc()
            return database.snapshot

    async def repository(self, dsn: str) -> Repository:
        """A repository on the shared pool (for the Monitor's recovery primitives)."""
        database = self._databases.setdefault(dsn, _Database())
        database.used_at = self._clock()
        async with database.lock:
            return Repository(await self._connect(dsn, database))

    async def _connect(self, dsn: str, database: _Database) -> Connector:
        if database.connector is None:
            try:
                database.connector = await self._opener(dsn)
            except DatabaseUnavailable as error:
                raise QueueAccessError(
                    reasons.DATABASE_UNREACHABLE,
                    f"cannot connect to the queue database: {errors.describe(error, dsn)}",
                ) from None
        return database.connector

    async def _query(self, dsn: str, database: _Database) -> Snapshot:
        connector = await self._connect(dsn, database)
        repository = Repository(connector)
        try:
            queue_rows = await repository.queue_stats()
            worker_rows = await repository.worker_stats(self.dead_after_seconds)
        except SCHEMA_ERRORS as error:
            raise QueueAccessError(
                reasons.QUEUE_SCHEMA_MISSING,
                "the queue schema does not exist yet (workers create it at start unless "
                f"spec.worker.migrate is false): {errors.describe(error, dsn)}",
            ) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            await self._drop_connector(database)
            raise QueueAccessError(
                reasons.DATABASE_UNREACHABLE,
                f"queue statistics query failed: {errors.describe(error, dsn)}",
            ) from None
        return Snapshot(
            queues={row.queue: row for row in queue_rows},
            workers={row.pool: row for row in worker_rows},
            taken_at=self._clock(),
        )

    async def _drop_connector(self, database: _Database) -> None:
        connector, database.connector = database.connector, None
        if connector is not None:
            try:
                await connector.close()
            except Exception as error:
                logger.debug("closing a broken pool failed: %s", type(error).__name__)

    async def close_idle(self) -> int:
        """Close pools of databases no pool has asked about for a while (DSN changes)."""
        cutoff = self._clock() - IDLE_CLOSE_SECONDS
        idle = [dsn for dsn, db in self._databases.items() if db.used_at < cutoff]
        for dsn in idle:
            await self._drop_connector(self._databases.pop(dsn))
        return len(idle)

    async def close(self) -> None:
        for database in self._databases.values():
            await self._drop_connector(database)
        self._databases.clear()

    @property
    def databases(self) -> int:
        return len(self._databases)
