"""One stats round per database every ROUND_SECONDS, serving every pool on it.

A pool attaches to its database when its sync has read the queue there. Each
database with pools attached has one task: every round it takes the inspector's
snapshot (the one stats query of the round, or a younger one a NOTIFY's sync
already took), compares each attached pool's rows with the last round's
(``refresh.figures_change``) and pokes the pools whose figures changed, so a
drain, a retry, a worker going silent or an enqueue that sent no NOTIFY shows
in the pool's status within about a round, at no cost for the pools whose
figures did not change. A database that cannot be read pokes its pools once
when that starts and once when it ends.

So the database sees one stats query per round however many pools it serves,
and the operator does work per pool only for pools that changed. While a
database's rounds read it (:meth:`StatsRounds.covers`), its pools need no
poll-driven sync: whatever the poll would have seen, the round pokes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from workerfleet.operator import metrics, refresh
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import QueueInspector, Snapshot
from workerfleet.operator.refresh import Figures

ROUND_SECONDS = 1.0
COVERED_ROUNDS = 3
"""A database's pools count as covered while its last good round is at most this many
rounds old (a round's query may take a while; a stalled round stops covering)."""

log = logging.getLogger(__name__)

Poke = Callable[[Hashable, refresh.Change], None]


@dataclass
class _Pool:
    queue: str
    pool: str
    """The pool's key in the workers table."""
    seen: Figures | None = None
    poked_at: float | None = None


@dataclass
class _Database:
    pools: dict[Hashable, _Pool] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    rounds: int = 0
    read_at: float | None = None
    """When the last round read the database; None while its rounds fail."""


def figures_of(pool: _Pool, snapshot: Snapshot | QueueAccessError) -> Figures:
    if isinstance(snapshot, QueueAccessError):
        return f"{snapshot.reason}: {snapshot.message}"
    return (snapshot.queues.get(pool.queue), snapshot.workers.get(pool.pool))


class StatsRounds:
    def __init__(
        self,
        inspector: QueueInspector,
        poke: Poke,
        round_seconds: float = ROUND_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inspector = inspector
        self._poke = poke
        self._round = round_seconds
        self._clock = clock
        self._databases: dict[str, _Database] = {}
        self._where: dict[Hashable, str] = {}

    def attach(
        self, key: Hashable, dsn: str, queue: str, pool: str, seen: Figures | None = None
    ) -> None:
        """``key`` is served from ``dsn``'s rounds from now on; ``seen``: the figures its
        status shows now (so the next round pokes it only if they changed)."""
        where = self._where.get(key)
        if where is not None and where != dsn:
            self.detach(key)
        database = self._databases.get(dsn)
        if database is None:
            database = self._databases[dsn] = _Database()
            database.task = asyncio.create_task(self._run(dsn, database), name="stats rounds")
            metrics.STATS_DATABASES.set(len(self._databases))
        known = database.pools.get(key)
        if known is None or (known.queue, known.pool) != (queue, pool):
            database.pools[key] = _Pool(queue, pool, seen)
        self._where[key] = dsn

    def detach(self, key: Hashable) -> None:
        dsn = self._where.pop(key, None)
        if dsn is None:
            return
        database = self._databases[dsn]
        database.pools.pop(key, None)
        if not database.pools:
            del self._databases[dsn]
            metrics.STATS_DATABASES.set(len(self._databases))
            if database.task is not None:
                database.task.cancel()

    def covers(self, key: Hashable, now: float) -> bool:
        """Whether ``key``'s database is read by its rounds now, so a change of the pool's
        figures pokes it (else its poll interval must)."""
        dsn = self._where.get(key)
        database = None if dsn is None else self._databases.get(dsn)
        if database is None or database.read_at is None:
            return False
        return now - database.read_at <= COVERED_ROUNDS * self._round

    def rounds(self, dsn: str) -> int:
        database = self._databases.get(dsn)
        return 0 if database is None else database.rounds

    @property
    def databases(self) -> int:
        return len(self._databases)

    async def close(self) -> None:
        tasks = [d.task for d in self._databases.values() if d.task is not None]
        self._databases.clear()
        self._where.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, dsn: str, database: _Database) -> None:
        while True:
            started = self._clock()
            # A snapshot younger than half a round (a NOTIFY's sync just took it) serves.
            snapshot: Snapshot | QueueAccessError
            try:
                snapshot = await self._inspector.snapshot(dsn, started - self._round / 2)
            except QueueAccessError as error:
                snapshot = error
            except Exception as error:  # a dead round would leave its pools without a poll
                log.exception("a stats round failed", extra={"round": database.rounds})
                snapshot = QueueAccessError("StatsRoundFailed", repr(error))
            database.read_at = None if isinstance(snapshot, QueueAccessError) else self._clock()
            database.rounds += 1
            metrics.STATS_ROUNDS.inc()
            self._compare(database, snapshot, self._clock())
            await asyncio.sleep(max(0.0, started + self._round - self._clock()))

    def _compare(
        self, database: _Database, snapshot: Snapshot | QueueAccessError, now: float
    ) -> None:
        for key, pool in list(database.pools.items()):
            figures = figures_of(pool, snapshot)
            change = refresh.figures_change(pool.seen, figures)
            pool.seen = figures
            if refresh.refresh_due(change, pool.poked_at, now):
                assert change is not None
                pool.poked_at = now
                try:
                    self._poke(key, change)
                except Exception:  # one pool's bug must not blind the others
                    log.exception("a stats round could not poke a pool", extra={"pool": key})
