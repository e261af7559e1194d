"""The queue inspector: one shared asyncpg pool and one stats query per database.

Every WorkerPool on the same database gets its figures from the same snapshot:
the database's stats round (``stats_rounds.py``) takes one every second, syncs
of pools on the database wait for the single query in flight, and a snapshot
younger than ``max_age_seconds`` is reused. A caller that needs a newer one (a
NOTIFY arrived after it was taken) gets the next query, which never starts
sooner than MIN_QUERY_SPACING_SECONDS after the one before: a storm of NOTIFYs
on a thousand queues still costs the database at most a few queries a second. A database
that cannot be reached is retried with exponential backoff (``retry.Backoff``,
one per database: the only backoff between the operator and a queue); until
then the last error is returned at once, so a dead database costs nothing per
tick and never delays pools on other databases.

A database no pool has asked about for ``IDLE_CLOSE_SECONDS`` (its Secret now
names another DSN, or its pools are gone) has its connection pool closed by
:meth:`QueueInspector.close_idle_forever`, a task the operator runs from start
to end.
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
from workerfleet.worker import retry
from workerfleet.worker.connector import (
    TRANSIENT_ERRORS,
    Connector,
    DatabaseUnavailable,
    InvalidDsn,
)
from workerfleet.worker.models import QueueStats, WorkerStats
from workerfleet.worker.repository import Repository

STATS_MAX_AGE_SECONDS = 2.0
MIN_QUERY_SPACING_SECONDS = 0.25
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
IDLE_CLOSE_SECONDS = 600.0
IDLE_CHECK_SECONDS = 60.0
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
    started_at: float = 0.0
    """When its query started: it shows every change committed before that."""


def access_error(error: BaseException, dsn: str, doing: str) -> QueueAccessError:
    """What an error met while ``doing`` something on the database means for its pools."""
    detail = errors.describe(error, dsn)
    if isinstance(error, SCHEMA_ERRORS):
        return QueueAccessError(
            reasons.QUEUE_SCHEMA_MISSING,
            "the queue schema does not exist yet (workers create it at start unless "
            f"spec.worker.migrate is false): {detail}",
        )
    if isinstance(error, TRANSIENT_ERRORS):
        return QueueAccessError(reasons.DATABASE_UNREACHABLE, f"{doing} failed: {detail}")
    # Reachable, but refusing us (a missing privilege, a schema of another version).
    return QueueAccessError(
        reasons.QUERY_FAILED, f"{doing} failed: {type(error).__name__}: {detail}"
    )


def _database_backoff() -> retry.Backoff:
    """1, 2, 4, ... seconds between attempts on a failing database, up to a minute."""
    return retry.Backoff(BACKOFF_INITIAL_SECONDS, BACKOFF_CAP_SECONDS)


@dataclass
class _Database:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connector: Connector | None = None
    snapshot: Snapshot | None = None
    backoff: retry.Backoff = field(default_factory=_database_backoff)
    retry_at: float = 0.0
    error: QueueAccessError | None = None
    used_at: float = 0.0
    queried_at: float | None = None
    """When the last query started."""
    queries: int = 0


class QueueInspector:
    def __init__(
        self,
        *,
        dead_after_seconds: float,
        max_age_seconds: float = STATS_MAX_AGE_SECONDS,
        min_spacing_seconds: float = MIN_QUERY_SPACING_SECONDS,
        opener: Opener = open_connector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dead_after_seconds = dead_after_seconds
        self.max_age_seconds = max_age_seconds
        self.min_spacing_seconds = min_spacing_seconds
        self._opener = opener
        self._clock = clock
        self._databases: dict[str, _Database] = {}

    async def snapshot(self, dsn: str, newer_than: float | None = None) -> Snapshot:
        """Fresh-enough stats of the database at ``dsn``; raises QueueAccessError.

        ``newer_than`` (monotonic): the query must have started after it (a NOTIFY
        arrived then, and the snapshot must show its job). Callers waiting on the
        same database share the query in flight when it is new enough for them.
        """
        database = self._databases.setdefault(dsn, _Database())
        database.used_at = self._clock()
        async with database.lock:
            now = self._clock()
            fresh = database.snapshot
            if (
                fresh is not None
                and now - fresh.taken_at < self.max_age_seconds
                and (newer_than is None or fresh.started_at >= newer_than)
            ):
                return fresh
            if database.error is not None and now < database.retry_at:
                raise database.error
            if database.queried_at is not None:
                wait = database.queried_at + self.min_spacing_seconds - now
                if wait > 0:
                    await asyncio.sleep(wait)
            database.queried_at = self._clock()
            database.queries += 1
            try:
                database.snapshot = await self._query(dsn, database)
            except QueueAccessError as error:
                database.snapshot = None
                metrics.STATS_QUERIES.labels(result="error").inc()
                if error.reason != reasons.QUEUE_SCHEMA_MISSING:  # that one is asked again
                    database.retry_at = now + database.backoff.next_delay()
                    database.error = error
                raise
            database.backoff.reset()
            database.error = None
            metrics.STATS_QUERIES.labels(result="ok").inc()
            return database.snapshot

    def queries(self, dsn: str) -> int:
        """Stats queries sent to ``dsn`` (for the tests and the benchmark)."""
        database = self._databases.get(dsn)
        return 0 if database is None else database.queries

    def retry_now(self, dsn: str) -> None:
        """Stop backing off ``dsn``: it answered someone else (the LISTEN connection is back)."""
        database = self._databases.get(dsn)
        if database is not None:
            database.retry_at = 0.0

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
            except InvalidDsn as error:
                raise QueueAccessError(
                    reasons.INVALID_DSN,
                    f"the queue's DSN is malformed: {errors.describe(error, dsn)}",
                ) from None
        return database.connector

    async def _query(self, dsn: str, database: _Database) -> Snapshot:
        started = self._clock()
        connector = await self._connect(dsn, database)
        repository = Repository(connector)
        try:
            queue_rows = await repository.queue_stats()
            worker_rows = await repository.worker_stats(self.dead_after_seconds)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as error:
            if isinstance(error, TRANSIENT_ERRORS):
                await self._drop_connector(database)  # the next attempt starts afresh
            raise access_error(error, dsn, "the queue statistics query") from None
        return Snapshot(
            queues={row.queue: row for row in queue_rows},
            workers={row.pool: row for row in worker_rows},
            taken_at=self._clock(),
            started_at=started,
        )

    async def _drop_connector(self, database: _Database) -> None:
        connector, database.connector = database.connector, None
        if connector is not None:
            try:
                await connector.close()
            except Exception as error:
                logger.debug("closing a broken pool failed: %s", type(error).__name__)

    async def close_idle(self) -> int:
        """Close the pools of databases no pool asked about for IDLE_CLOSE_SECONDS.

        Without this a rotated DSN would keep the old one's connections open
        for the life of the operator. Returns how many were closed.
        """
        cutoff = self._clock() - IDLE_CLOSE_SECONDS
        # Forgotten before the first await: a caller arriving meanwhile starts afresh.
        idle = [
            self._databases.pop(dsn)
            for dsn, database in list(self._databases.items())
            if database.used_at < cutoff
        ]
        for database in idle:
            async with database.lock:  # a query still in flight ends first
                await self._drop_connector(database)
        return len(idle)

    async def close_idle_forever(self, every_seconds: float = IDLE_CHECK_SECONDS) -> None:
        """:meth:`close_idle` every ``every_seconds``, until cancelled."""
        while True:
            await asyncio.sleep(every_seconds)
            closed = await self.close_idle()
            if closed:
                logger.info("closed the pools of %d idle queue databases", closed)

    async def close(self) -> None:
        for database in self._databases.values():
            await self._drop_connector(database)
        self._databases.clear()

    @property
    def databases(self) -> int:
        return len(self._databases)
