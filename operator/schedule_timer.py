"""spec.schedules of each WorkerPool, enqueued on time by steps the operator's scheduler times.

Each pool has a :class:`PoolScheduler` in its ``Runtime.pools`` entry. Its step
registers the schedules the spec names and has ``workerfleet.worker.schedules``
enqueue what is due: each run once, whatever other scheduler (a second replica,
a restarted one) tries the same. Runs missed while no operator ran are counted
there and told here as MissedSchedule Events. The step returns when the next run
is due, and the operator's one scheduler (``scheduler.py``) wakes it then, or at
once when the spec changes; a pool without schedules is never woken again until
its spec changes (there is no task, daemon or timer per pool). A deleted pool's
schedules leave the database. The status section is not written here: the pool's
sync reads the same rows (``pool_sync.read_schedules``) with the rest of its
status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from workerfleet.operator import builders, schedules, validation
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.runtime import SCHEDULES, PoolEntry, PoolKey, Runtime
from workerfleet.worker import connector
from workerfleet.worker import schedules as worker_schedules
from workerfleet.worker.models import ScheduleDefinition
from workerfleet.worker.repository import Repository

# The next run's time is a wall-clock time, the scheduler's a monotonic one: a step at least
# this often notices a step of the wall clock.
MAX_SLEEP_SECONDS = 10.0
RETRY_SECONDS = 5.0
# A database without the schedules table yet (its workers run an older version).
DATABASE_ERRORS = (*connector.TRANSIENT_ERRORS, asyncpg.PostgresError)

log = logging.getLogger(__name__)


@dataclass
class PoolScheduler:
    """What one pool's schedules remember between steps."""

    runtime: Runtime
    entry: PoolEntry
    """The pool's entry: its body is the latest the watch showed."""
    namespace: str
    name: str
    generation: int | None = None
    wanted: tuple[ScheduleDefinition, ...] | None = None
    """spec.schedules as definitions; None while the spec is invalid."""
    registered: tuple[ScheduleDefinition, ...] | None = None
    registered_dsn: str | None = None
    wake_at: datetime | None = None
    """When a run is next due (None: look now)."""
    failing: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One step at a time; the clean-up of a deleted pool waits for the step under way."""

    @property
    def body(self) -> Any:
        return self.entry.body

    @property
    def pool(self) -> str:
        return builders.pool_key(self.namespace, self.name)

    def read_spec(self) -> None:
        generation = self.body.get("metadata", {}).get("generation")
        if generation == self.generation and generation is not None:
            return
        self.generation = generation
        parsed = validation.parse_pool(self.name, self.body.get("spec") or {})
        if parsed.spec is None or parsed.problem is not None:
            self.wanted = None  # the pool's condition says why; the rows stay as they are
            return
        self.wanted = tuple(schedules.definitions(parsed.spec))

    def left_in_status(self) -> bool:
        """Whether the status still lists schedules (rows to remove)."""
        return bool((self.body.get("status") or {}).get("schedules"))

    async def repository(self) -> tuple[str, Repository]:
        spec = self.body.get("spec") or {}
        ref = (spec.get("database") or {}).get("secretRef") or {}
        dsn = await self.runtime.secrets.dsn(
            self.namespace, ref.get("name", ""), ref.get("key", "dsn")
        )
        return dsn, await self.runtime.inspector.repository(dsn)

    async def step(self, now: datetime) -> float | None:
        """Register what changed, enqueue what is due; returns how long until the next step
        (None: not before the spec changes)."""
        self.read_spec()
        if self.wanted == () and self.registered is None and not self.left_in_status():
            self.registered = ()  # never had any: no need to touch the database
        if self.wanted is None or (not self.wanted and self.registered == ()):
            return None
        try:
            dsn, repository = await self.repository()
            if self.registered != self.wanted or self.registered_dsn != dsn:
                await self.register(repository, now)
                self.registered, self.registered_dsn, self.wake_at = self.wanted, dsn, None
            if self.wanted and (self.wake_at is None or now >= self.wake_at):
                await self.run_due(repository, now)
        except (QueueAccessError, *DATABASE_ERRORS) as error:
            self.note_failure(error)
            return RETRY_SECONDS
        if self.failing is not None:
            log.info("schedules running again", extra={"pool": self.pool})
            self.failing = None
        return sleep_seconds(self.wake_at, datetime.now(UTC))

    async def register(self, repository: Repository, now: datetime) -> None:
        wanted = self.wanted or ()
        registrations = await worker_schedules.register(
            repository, self.pool, schedules.SOURCE, wanted, now
        )
        for registration in registrations:
            if registration.taken:
                event = schedules.conflict_event(registration.name, registration.held_by)
                post(self.body, event.type, event.reason, event.message)

    async def run_due(self, repository: Repository, now: datetime) -> None:
        rows = await repository.list_schedules(self.pool)
        results = await worker_schedules.run_due(repository, self.pool, schedules.SOURCE, now, rows)
        for result in results:
            if result.job_id is not None:
                lag = (datetime.now(UTC) - (result.decision.run_at or now)).total_seconds()
                log.info(
                    "scheduled run enqueued",
                    extra={
                        "pool": self.pool,
                        "schedule": result.row.name,
                        "scheduled_at": result.decision.run_at,
                        "job_id": result.job_id,
                        "lag_seconds": round(lag, 3),
                    },
                )
            event = schedules.missed_event(result, now)
            if event is not None:
                post(self.body, event.type, event.reason, event.message)
        self.wake_at = worker_schedules.next_run_time(rows, schedules.SOURCE, now)

    def note_failure(self, error: BaseException) -> None:
        message = (
            error.message
            if isinstance(error, QueueAccessError)
            else connector.describe_error(error)
        )
        if message != self.failing:
            log.warning(
                "schedules cannot run now; retrying",
                extra={"pool": self.pool, "error": message, "retry_in_seconds": RETRY_SECONDS},
            )
        self.failing = message

    async def close(self) -> None:
        """The pool is gone: after the step under way, its schedules leave the database."""
        async with self.lock:
            await self.forget()

    async def forget(self) -> None:
        """The pool is gone: its schedules go from the database too (best effort)."""
        if not self.registered:
            return
        try:
            _, repository = await self.repository()
            await worker_schedules.register(
                repository, self.pool, schedules.SOURCE, (), datetime.now(UTC)
            )
        except (QueueAccessError, *DATABASE_ERRORS) as error:
            log.info(
                "could not remove a deleted pool's schedules",
                extra={"pool": self.pool, "error": str(error)},
            )


def sleep_seconds(wake_at: datetime | None, now: datetime) -> float | None:
    """Until ``wake_at``, but no longer than MAX_SLEEP_SECONDS (pure); None: no run ahead."""
    if wake_at is None:
        return None
    return max(0.0, min(MAX_SLEEP_SECONDS, (wake_at - now).total_seconds()))


def attach(runtime: Runtime, key: PoolKey, entry: PoolEntry) -> None:
    """Give a pool its schedules' state (once per pool) and a step now."""
    if entry.schedules is None:
        entry.schedules = PoolScheduler(runtime, entry, *key)
    runtime.schedules_run = run_due
    runtime.scheduler.set((SCHEDULES, key), time.monotonic())


async def run_due(runtime: Runtime, key: PoolKey) -> None:
    """The step the scheduler woke for; the next one is set from what it returns."""
    entry = runtime.pools.get(key)
    if entry is None or not isinstance(entry.schedules, PoolScheduler):
        return
    scheduler = entry.schedules
    async with scheduler.lock:
        try:
            delay = await scheduler.step(datetime.now(UTC))
        except Exception:  # the next step tries again
            log.exception("schedules step failed", extra={"pool": scheduler.pool})
            delay = RETRY_SECONDS
    if delay is not None and runtime.pools.get(key) is entry:
        runtime.scheduler.set((SCHEDULES, key), time.monotonic() + delay)
