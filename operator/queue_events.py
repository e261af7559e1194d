"""LISTEN on every queue database the operator reads: one connection per database,
shared by every pool on it.

A NOTIFY on ``workerfleet_jobs`` names the queue that got a ready job (the enqueue
SQL sends it, and so do a retry, a release and a rescue). Each subscriber of that
queue on that database hears it, stamped with the moment it arrived. Subscribers
also hear when the connection is lost (NOTIFYs are missed until it is back: the
database's stats round, or a pool's poll interval, covers that) and when it is
(back) up, since what was enqueued meanwhile deserves a look. A lost connection is
retried with backoff (``retry.Backoff``, 1 s doubling up to a minute); a connection
that went silent is found by a probe every ``PROBE_INTERVAL_SECONDS``. The connection
of a database no pool subscribes to any more is closed.

Subscribers are keyed (a pool subscribes under its own key, once per database and
queue) and called on the event loop: they must return at once (the scaler only
marks the pool for an evaluation). Anything else that wants fresh queue figures
(the status refresh, for one) subscribes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from workerfleet.operator import errors, metrics
from workerfleet.worker import connector, retry
from workerfleet.worker.repository import NOTIFY_CHANNEL

BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
PROBE_INTERVAL_SECONDS = 15.0
PROBE_TIMEOUT_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(__name__)

EventKind = Literal["notify", "connected", "lost"]
Connect = Callable[[str], Awaitable[asyncpg.Connection]]


@dataclass(frozen=True)
class QueueEvent:
    kind: EventKind
    queue: str | None
    """The queue a NOTIFY named; None for the connection's own events."""
    received_at: float
    """When it arrived (monotonic seconds)."""


Callback = Callable[[QueueEvent], None]


@dataclass
class _Database:
    task: asyncio.Task[None] | None = None
    connected: bool = False
    subscribers: dict[str, dict[Hashable, Callback]] = field(default_factory=dict)
    """queue -> key -> callback."""

    def callbacks(self, queue: str | None) -> list[Callback]:
        if queue is None:
            return [cb for by_key in self.subscribers.values() for cb in by_key.values()]
        return list(self.subscribers.get(queue, {}).values())


class QueueEvents:
    def __init__(
        self,
        connect: Connect = connector.connect,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_seconds: float = BACKOFF_INITIAL_SECONDS,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._backoff_initial = backoff_initial_seconds
        self._databases: dict[str, _Database] = {}
        self._where: dict[Hashable, tuple[str, str]] = {}

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, key: Hashable, dsn: str, queue: str, callback: Callback) -> None:
        """``callback`` hears NOTIFYs for ``queue`` on ``dsn`` and the connection's events;
        a key subscribes to one (dsn, queue) at a time (a new one replaces it)."""
        if self._where.get(key) != (dsn, queue):
            self.unsubscribe(key)
        database = self._databases.get(dsn)
        if database is None:
            database = self._databases[dsn] = _Database()
            database.task = asyncio.create_task(self._listen(dsn, database), name="LISTEN")
        database.subscribers.setdefault(queue, {})[key] = callback
        self._where[key] = (dsn, queue)

    def unsubscribe(self, key: Hashable) -> None:
        where = self._where.pop(key, None)
        if where is None:
            return
        dsn, queue = where
        database = self._databases[dsn]
        by_key = database.subscribers.get(queue, {})
        by_key.pop(key, None)
        if not by_key:
            database.subscribers.pop(queue, None)
        if not database.subscribers:
            del self._databases[dsn]
            if database.task is not None:
                database.task.cancel()

    def connected(self, dsn: str) -> bool:
        database = self._databases.get(dsn)
        return database is not None and database.connected

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

    # -- the connection of one database ----------------------------------------------------

    def _dispatch(self, database: _Database, event: QueueEvent) -> None:
        for callback in database.callbacks(event.queue):
            try:
                callback(event)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("a queue event subscriber failed")

    async def _listen(self, dsn: str, database: _Database) -> None:
        backoff = retry.Backoff(self._backoff_initial, BACKOFF_CAP_SECONDS)
        try:
            while True:
                try:
                    await self._listen_until_lost(dsn, database, backoff)
                except Exception as error:
                    if backoff.failures == 0:
                        log.warning(
                            "LISTEN on a queue database failed; its pools fall back to its "
                            "stats round (or their poll interval) while it reconnects",
                            extra={"error": errors.describe(error, dsn)},
                        )
                if self._disconnected(database):
                    self._dispatch(database, QueueEvent("lost", None, self._clock()))
                await asyncio.sleep(backoff.next_delay())
        finally:
            self._disconnected(database)

    @staticmethod
    def _disconnected(database: _Database) -> bool:
        """Mark ``database`` disconnected; whether it was connected."""
        if not database.connected:
            return False
        database.connected = False
        metrics.LISTEN_CONNECTIONS.dec()
        return True

    async def _listen_until_lost(
        self, dsn: str, database: _Database, backoff: retry.Backoff
    ) -> None:
        connection = await self._connect(dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())

        def on_notify(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            metrics.QUEUE_NOTIFICATIONS.inc()
            self._dispatch(database, QueueEvent("notify", payload or None, self._clock()))

        try:
            await connection.add_listener(NOTIFY_CHANNEL, on_notify)
            backoff.reset()
            database.connected = True
            metrics.LISTEN_CONNECTIONS.inc()
            self._dispatch(database, QueueEvent("connected", None, self._clock()))
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_INTERVAL_SECONDS):
                        await lost.wait()
                if not lost.is_set():  # silence: is the server still there?
                    async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                        await connection.execute("SELECT 1")
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await connection.close()
