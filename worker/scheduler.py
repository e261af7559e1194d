"""The worker's scheduler: tasks declared with ``@task(schedule=...)`` run without the operator.

Every worker of a pool whose handlers module declares schedules runs this side
task, and one of them at a time leads: the one holding the pool's scheduler
lock, a session-level advisory lock on a connection of its own. The leader
registers the module's schedules (source ``worker``) and enqueues their due
runs through ``workerfleet.worker.schedules``, the same code the operator uses;
the others wait for the lock. A leader that stops, crashes or loses its
connection frees the lock with its session, and the next worker to ask takes
over; a run both might see due is still enqueued once (the database sees to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from workerfleet.worker import connector, schedules, tasks
from workerfleet.worker.logging_setup import LOGGER_NAME
from workerfleet.worker.models import ScheduleDefinition
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository

SOURCE = "worker"
LOCK_RETRY_SECONDS = 5.0
# The leader checks its lock connection at least this often between runs.
LEASE_CHECK_SECONDS = 10.0

log = logging.getLogger(LOGGER_NAME + ".scheduler")


def definitions(registry: tasks.TaskRegistry, queue: str) -> list[ScheduleDefinition]:
    """The registry's scheduled tasks, each enqueued on ``queue`` under the task's name."""
    found = []
    for name in registry:
        schedule = registry[name].schedule
        if schedule is None:
            continue
        found.append(
            ScheduleDefinition(
                name=name,
                queue=queue,
                task=name,
                cron=schedule.cron,
                time_zone=schedule.time_zone,
                payload=schedule.payload,
                priority=schedule.priority,
                max_attempts=schedule.max_attempts,
                starting_deadline_seconds=schedule.starting_deadline_seconds,
            )
        )
    return found


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()


class WorkerScheduler:
    def __init__(
        self,
        dsn: str,
        pool: str,
        repository: Repository,
        declared: Sequence[ScheduleDefinition],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.dsn = dsn
        self.pool = pool
        self.repository = repository
        self.declared = list(declared)
        self.clock = clock
        self.leading = False

    async def run(self, stop: asyncio.Event) -> None:
        """Ask for the lock, lead while it is held, until ``stop``; never raises."""
        backoff = connector.reconnect_backoff()
        while not stop.is_set():
            try:
                await self._hold_and_lead(stop)
                backoff.reset()
                delay = LOCK_RETRY_SECONDS
            except Exception as error:  # the worker outlives any scheduler trouble
                if not isinstance(error, connector.TRANSIENT_ERRORS):
                    log.error("the scheduler failed; retrying", exc_info=error)
                delay = backoff.next_delay()
            if self.leading:
                log.info("this worker no longer runs the pool's schedules")
                self.leading = False
            await _wait(stop, delay)

    async def _hold_and_lead(self, stop: asyncio.Event) -> None:
        connection = await connector.connect(self.dsn)
        try:
            if not await connection.fetchval(QUERIES["schedule_lock_try"], self.pool):
                return
            self.leading = True
            log.info(
                "this worker runs the pool's schedules",
                extra={"pool": self.pool, "schedules": [d.name for d in self.declared]},
            )
            await schedules.register(
                self.repository, self.pool, SOURCE, self.declared, self.clock()
            )
            await self._lead(connection, stop)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()  # the lock goes with the session

    async def _lead(self, connection: asyncpg.Connection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            rows = await self.repository.list_schedules(self.pool)
            for result in await schedules.run_due(self.repository, self.pool, SOURCE, now, rows):
                self._log(result)
            wake = schedules.next_run_time(rows, SOURCE, now)
            until_wake = LEASE_CHECK_SECONDS if wake is None else (wake - now).total_seconds()
            await _wait(stop, min(until_wake, LEASE_CHECK_SECONDS))
            await connection.fetchval(QUERIES["ping"])  # raises once the session (lock) is gone

    def _log(self, result: schedules.RunResult) -> None:
        fields = {
            "pool": self.pool,
            "schedule": result.row.name,
            "job_id": result.job_id,
            "scheduled_at": result.decision.run_at,
            "missed": result.decision.missed,
        }
        if result.decision.missed and result.advanced:
            log.warning("scheduled runs missed while no worker led", extra=fields)
        elif result.job_id is not None:
            log.info("scheduled run enqueued", extra=fields)
