"""A WorkerPool's schedules as the operator sees them: definitions from the spec, the
status section from the database rows, Events for missed runs. Pure functions; the
steps that act on them are ``schedule_timer.py``, the rule itself
``workerfleet.worker.schedules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from workerfleet.operator import conditions, models, reasons
from workerfleet.operator.rollup import Event
from workerfleet.worker import cron
from workerfleet.worker import schedules as worker_schedules
from workerfleet.worker.models import ScheduleDefinition, ScheduleRow

SOURCE = "operator"
PRUNED = "pruned"


def definitions(spec: models.WorkerPoolSpec) -> list[ScheduleDefinition]:
    """spec.schedules as the rows the operator registers, each on the pool's queue."""
    return [
        ScheduleDefinition(
            name=schedule.name,
            queue=spec.queue,
            task=schedule.task,
            cron=schedule.cron,
            time_zone=schedule.time_zone,
            payload=schedule.payload,
            priority=schedule.priority,
            max_attempts=schedule.max_attempts,
            starting_deadline_seconds=schedule.starting_deadline_seconds,
            suspended=schedule.suspend,
        )
        for schedule in spec.schedules
    ]


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else conditions.rfc3339(moment)


def status_entry(row: ScheduleRow, now: datetime) -> dict[str, Any]:
    """One schedule's part of status.schedules."""
    try:
        next_run = worker_schedules.decide(row, now).next_run
    except cron.CronError:
        next_run = None
    last_state = row.last_job_state
    if row.last_job_id is not None and last_state is None:
        last_state = PRUNED  # the job was deleted by retention since
    return models.ScheduleStatus(
        name=row.name,
        suspended=row.suspended,
        last_schedule_time=_time(row.last_scheduled_at),
        last_job_id=row.last_job_id,
        last_job_state=last_state,
        next_run_time=_time(next_run),
        missed_runs=row.missed_runs,
        last_missed_time=_time(row.last_missed_at),
    ).model_dump(by_alias=True, exclude_none=True)


def status_section(rows: Sequence[ScheduleRow], now: datetime) -> list[dict[str, Any]] | None:
    """status.schedules: spec.schedules' rows (not the workers' own); None when none."""
    entries = [status_entry(row, now) for row in rows if row.source == SOURCE]
    return entries or None


def missed_event(result: worker_schedules.RunResult, now: datetime) -> Event | None:
    """A Warning for runs skipped by this scheduler (none when another one did it)."""
    decision = result.decision
    if not result.advanced or decision.missed == 0 or decision.latest_missed is None:
        return None
    name = result.row.name
    runs = "run" if decision.missed == 1 else "runs"
    latest = conditions.rfc3339(decision.latest_missed)
    if decision.run_at is None:
        deadline = result.row.starting_deadline_seconds or 0.0
        late_seconds = max(0.0, (now - decision.latest_missed).total_seconds())
        tail = (
            f"skipped: the latest was found {late_seconds:.0f}s late, past startingDeadline "
            f"({deadline:g}s)"
        )
    else:
        tail = f"skipped; the latest, {conditions.rfc3339(decision.run_at)}, was enqueued"
    message = (
        f"schedule {name}: {decision.missed} {runs} missed while no scheduler ran "
        f"(the last skipped at {latest}); {tail}"
    )
    return Event("Warning", reasons.EVENT_MISSED_SCHEDULE, message)


def conflict_event(name: str, held_by: str | None) -> Event:
    return Event(
        "Warning",
        reasons.EVENT_SCHEDULE_CONFLICT,
        f"schedule {name}: the pool's workers declare a schedule of the same name "
        f"({held_by}); theirs runs and spec.schedules[{name}] does not: rename one",
    )
