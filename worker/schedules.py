"""Periodic jobs: the one implementation of "enqueue each due run once".

Two schedulers use it, each for the schedules of its own source:

* the operator, for a WorkerPool's ``spec.schedules`` (source ``operator``);
* the worker that holds its pool's scheduler lock, for the tasks of its
  handlers module declared with ``@task(schedule=...)`` (source ``worker``),
  so a queue used without the operator runs its schedules too.

Both register their definitions (:func:`register`), then call
:func:`run_due` whenever a run may be due. :func:`decide` is the pure rule,
CronJob's: of the runs that fell since the schedule's last run, the latest is
enqueued (when ``starting_deadline`` allows) and the others are skipped and
counted. The database makes it exactly once: a run is written with its unique
key (pool, schedule, scheduled time) and only if it is later than every run
enqueued or skipped before, in one statement, so two schedulers, a restart or a
clock stepped back never enqueue a run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from workerfleet.worker import cron
from workerfleet.worker.models import Registration, ScheduleDefinition, ScheduleRow
from workerfleet.worker.repository import Repository

# Runs older than this (before the newest) are deleted from schedule_runs as new
# runs are written; the schedule's own row keeps its marks for ever.
RUN_HISTORY_SECONDS = 7 * 24 * 3600.0
ONE_SECOND = timedelta(seconds=1)

log = logging.getLogger("workerfleet.schedules")


@dataclass(frozen=True)
class Decision:
    """What is due now: the run to enqueue (if any), runs to skip, and the next run."""

    run_at: datetime | None
    missed: int
    latest_missed: datetime | None
    next_run: datetime | None

    @property
    def acts(self) -> bool:
        return self.run_at is not None or self.missed > 0


@dataclass(frozen=True)
class RunResult:
    """One schedule moved past its due runs by :func:`run_due`.

    ``advanced`` is False when another scheduler had already done it: then
    nothing was enqueued nor counted here.
    """

    row: ScheduleRow
    decision: Decision
    advanced: bool
    job_id: int | None


def window_start(row: ScheduleRow) -> datetime:
    """Runs at or before this were enqueued, skipped, or fell before the schedule existed."""
    marks = [row.since, row.last_scheduled_at, row.last_missed_at]
    return max(mark for mark in marks if mark is not None)


def decide(row: ScheduleRow, now: datetime) -> Decision:
    """The runs of ``row`` due at ``now`` (pure; raises cron.CronError for a bad row)."""
    schedule = cron.parse(row.cron, row.time_zone)
    start = window_start(row)
    if row.suspended:
        return Decision(None, 0, None, None)
    next_run = schedule.next_after(max(start, now))
    latest = schedule.latest_at_or_before(now)
    if latest is None or latest <= start:
        return Decision(None, 0, None, next_run)
    due = schedule.count_between(start, now)
    deadline = row.starting_deadline_seconds
    if deadline is not None and (now - latest).total_seconds() > deadline:
        return Decision(None, due, latest, next_run)
    if due <= 1:
        return Decision(latest, 0, None, next_run)
    return Decision(latest, due - 1, schedule.latest_at_or_before(latest - ONE_SECOND), next_run)


def next_run_time(rows: Iterable[ScheduleRow], source: str, now: datetime) -> datetime | None:
    """The earliest run of ``source``'s schedules after ``now`` (None: none will run).

    A run due at ``now`` itself is :func:`run_due`'s to enqueue, not counted here.
    """
    times = []
    for row in rows:
        if row.source != source:
            continue
        try:
            next_run = decide(row, now).next_run
        except cron.CronError:
            continue
        if next_run is not None:
            times.append(next_run)
    return min(times, default=None)


async def register(
    repository: Repository,
    pool: str,
    source: str,
    definitions: Sequence[ScheduleDefinition],
    now: datetime,
) -> list[Registration]:
    """Make ``pool``'s schedules of ``source`` exactly ``definitions``.

    A name the other source already holds in the pool is left to it; the
    result says so (``Registration.taken``).
    """
    next_runs = [cron.parse(d.cron, d.time_zone).next_after(now) for d in definitions]
    registrations = await repository.register_schedules(pool, source, definitions, next_runs, now)
    for registration in registrations:
        if registration.taken:
            log.warning(
                "a schedule of this name is declared elsewhere in the pool; left to it",
                extra={
                    "pool": pool,
                    "schedule": registration.name,
                    "held_by": registration.held_by,
                },
            )
    return registrations


async def run_due(
    repository: Repository,
    pool: str,
    source: str,
    now: datetime,
    rows: Sequence[ScheduleRow] | None = None,
) -> list[RunResult]:
    """Enqueue every due run of ``pool``'s schedules of ``source``, each once."""
    if rows is None:
        rows = await repository.list_schedules(pool)
    results = []
    for row in rows:
        if row.source != source:
            continue
        try:
            decision = decide(row, now)
        except cron.CronError as error:  # registered by a version that allowed it
            log.error(
                "schedule skipped: it cannot be read",
                extra={"pool": pool, "schedule": row.name, "error": str(error)},
            )
            continue
        if not decision.acts:
            continue
        advance = await repository.advance_schedule(
            row,
            decision.run_at,
            decision.missed,
            decision.latest_missed,
            decision.next_run,
            RUN_HISTORY_SECONDS,
        )
        results.append(RunResult(row, decision, advance.advanced, advance.job_id))
    return results
