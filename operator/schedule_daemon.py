"""The scheduler of each WorkerPool: a kopf daemon that enqueues spec.schedules' runs on time.

One daemon per pool sleeps until the next run of the pool's schedules (never
longer than SPEC_CHECK_SECONDS, so an edited spec is acted on within a second),
then has ``workerfleet.worker.schedules`` enqueue what is due: each run once,
whatever other scheduler (a second replica, a restarted one) tries the same.
Runs missed while no operator ran are counted there and told here as
MissedSchedule Events. The status section is not written here: the pool's sync
reads the same rows (``pool_sync.read_schedules``) with the rest of its status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import kopf

from workerfleet.operator import builders, schedules, validation
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.kopf_glue import WORKERPOOLS, in_namespace, post, runtime_of
from workerfleet.operator.runtime import Runtime
from workerfleet.worker import connector
from workerfleet.worker import schedules as worker_schedules
from workerfleet.worker.models import ScheduleDefinition
from workerfleet.worker.repository import Repository

SPEC_CHECK_SECONDS = 1.0
RETRY_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 10.0
DELETED_FLAG = "pool_deleted"
# A database without the schedules table yet (its workers run an older version).
DATABASE_ERRORS = (*connector.TRANSIENT_ERRORS, asyncpg.PostgresError)

log = logging.getLogger(__name__)


@dataclass
class PoolScheduler:
    """What one pool's daemon remembers between wake-ups."""

    runtime: Runtime
    body: Any
    """The WorkerPool, kept current by kopf (a daemon's body is live)."""
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

    async def step(self, now: datetime) -> float:
        """Register what changed, enqueue what is due; returns how long to sleep."""
        self.read_spec()
        if self.wanted == () and self.registered is None and not self.left_in_status():
            self.registered = ()  # never had any: no need to touch the database
        if self.wanted is None or (not self.wanted and self.registered == ()):
            return SPEC_CHECK_SECONDS
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


def pool_deleted(memo: Any) -> bool:
    return bool(memo.get(DELETED_FLAG))


@kopf.on.event(*WORKERPOOLS)
async def pool_gone(event: Mapping[str, Any], memo: Any, **_: Any) -> None:
    """Tell the pool's daemon that the pool is gone.

    kopf stops a daemon when it sees the object's deletionTimestamp, but a pool
    deleted without finalizers (the operator sets none) arrives as a DELETED
    event without one, and the daemon would run on. The per-object memo is the
    one the daemon was given.
    """
    if event.get("type") == "DELETED":
        memo[DELETED_FLAG] = True


def sleep_seconds(wake_at: datetime | None, now: datetime) -> float:
    """Until ``wake_at``, but no longer than SPEC_CHECK_SECONDS (pure)."""
    if wake_at is None:
        return SPEC_CHECK_SECONDS
    return max(0.0, min(SPEC_CHECK_SECONDS, (wake_at - now).total_seconds()))


# A daemon told to stop gets STOP_TIMEOUT_SECONDS to finish (a deleted pool's clean-up
# talks to its database) before kopf cancels it.
@kopf.daemon(
    *WORKERPOOLS,
    cancellation_backoff=STOP_TIMEOUT_SECONDS,
    cancellation_timeout=STOP_TIMEOUT_SECONDS,
)
async def pool_schedules(
    stopped: Any, body: Any, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    scheduler = PoolScheduler(runtime_of(memo), body, in_namespace(namespace), name)
    while not stopped and not pool_deleted(memo):
        try:
            delay = await scheduler.step(datetime.now(UTC))
        except Exception:  # the daemon outlives any one bad step
            log.exception("schedules step failed", extra={"pool": scheduler.pool})
            delay = RETRY_SECONDS
        await stopped.wait(delay)
    deleted = stopped.reason is not None and bool(
        stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED
    )
    if deleted or pool_deleted(memo):
        await scheduler.forget()
