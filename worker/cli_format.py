"""Pure output formatting for the ``workerfleet`` CLI: tables, ages, JSON.

No I/O: every function turns rows into text, so the layout is unit-tested
without a database.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from workerfleet.durations import format_duration
from workerfleet.worker import cron, schedules
from workerfleet.worker.models import (
    CountDrift,
    Job,
    QueueStats,
    ScheduleRow,
    WorkerRow,
    WorkerStats,
)

ERROR_COLUMN_MAX_CHARS = 60


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; None prints as '-'."""
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *cells]
    ]
    return "\n".join(lines)


def format_age(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return format_duration(max(seconds, 0.0))


def short_error(error: str | None) -> str | None:
    if error is None:
        return None
    first_line = error.strip().splitlines()[0] if error.strip() else ""
    if len(first_line) > ERROR_COLUMN_MAX_CHARS:
        return first_line[: ERROR_COLUMN_MAX_CHARS - 3] + "..."
    return first_line


def stats_table(stats: Sequence[QueueStats]) -> str:
    headers = [
        "QUEUE",
        "PENDING",
        "SCHEDULED",
        "RUNNING",
        "SUCCEEDED",
        "DEAD",
        "CANCELLED",
        "OLDEST",
        "DONE/MIN",
    ]
    rows = [
        [
            row.queue,
            row.pending,
            row.scheduled,
            row.running,
            row.succeeded,
            row.dead,
            row.cancelled,
            format_age(row.oldest_pending_seconds),
            row.finished_last_minute,
        ]
        for row in stats
    ]
    return render_table(headers, rows) if rows else "no jobs"


def worker_stats_table(stats: Sequence[WorkerStats]) -> str:
    headers = ["POOL", "ONLINE", "BUSY", "IDLE", "DRAINING", "DEAD"]
    rows = [[s.pool, s.online, s.busy, s.idle, s.draining, s.dead] for s in stats]
    return render_table(headers, rows) if rows else "no workers"


def drift_table(rows: Sequence[CountDrift]) -> str:
    """The (queue, state) pairs whose depth counters were off, and by how much."""
    headers = ["QUEUE", "STATE", "JOBS", "COUNTERS WERE OFF BY"]
    lines = [[row.queue, row.state, row.counted, f"{row.drift:+d}"] for row in rows]
    return render_table(headers, lines)


def jobs_table(jobs: Sequence[Job]) -> str:
    headers = ["ID", "QUEUE", "TASK", "STATE", "ATTEMPT", "PRIORITY", "RUN_AT", "WORKER", "ERROR"]
    rows = [
        [
            job.id,
            job.queue,
            job.task,
            job.state,
            f"{job.attempt}/{max_attempts_text(job)}",
            job.priority,
            job.run_at.isoformat(timespec="seconds"),
            job.worker_id,
            short_error(job.last_error),
        ]
        for job in jobs
    ]
    return render_table(headers, rows) if rows else "no jobs"


def workers_table(workers: Sequence[WorkerRow], now: datetime) -> str:
    headers = ["ID", "POOL", "STATE", "QUEUES", "JOBS", "SUCCEEDED", "FAILED", "HEARTBEAT", "VER"]
    rows = [
        [
            worker.id,
            worker.pool,
            worker.state,
            ",".join(worker.queues),
            worker.current_jobs,
            worker.jobs_succeeded,
            worker.jobs_failed,
            f"{format_age((now - worker.heartbeat_at).total_seconds())} ago",
            worker.version,
        ]
        for worker in workers
    ]
    return render_table(headers, rows) if rows else "no workers"


def next_run(row: ScheduleRow, now: datetime) -> datetime | None:
    """When ``row`` runs next, by its cron expression (None: suspended or unreadable)."""
    try:
        return schedules.decide(row, now).next_run
    except cron.CronError:
        return None


def _moment(value: datetime | None, now: datetime) -> str | None:
    if value is None:
        return None
    seconds = (value - now).total_seconds()
    relative = f"in {format_age(seconds)}" if seconds >= 0 else f"{format_age(-seconds)} ago"
    return f"{value.isoformat(timespec='seconds')} ({relative})"


def schedules_table(rows: Sequence[ScheduleRow], now: datetime) -> str:
    headers = ["POOL", "NAME", "SOURCE", "SCHEDULE", "TASK", "QUEUE", "NEXT RUN", "LAST RUN"]
    headers += ["LAST JOB", "MISSED"]
    table = []
    for row in rows:
        last_job = None
        if row.last_job_id is not None:
            last_job = f"{row.last_job_id} {row.last_job_state or 'pruned'}"
        coming = "suspended" if row.suspended else _moment(next_run(row, now), now)
        table.append(
            [
                row.pool,
                row.name,
                row.source,
                f"{row.cron} {row.time_zone}",
                row.task,
                row.queue,
                coming,
                _moment(row.last_scheduled_at, now),
                last_job,
                row.missed_runs,
            ]
        )
    return render_table(headers, table) if table else "no schedules"


def schedules_json(rows: Sequence[ScheduleRow], now: datetime) -> str:
    documents = [{**dataclasses.asdict(row), "next_run": next_run(row, now)} for row in rows]
    return json.dumps(documents, default=_json_default, sort_keys=True)


def max_attempts_text(job: Job) -> str:
    """A job enqueued without max_attempts gets the claiming worker's: "default" until then."""
    return "default" if job.max_attempts is None else str(job.max_attempts)


def job_details(job: Job) -> str:
    shown = {field.name: _show(getattr(job, field.name)) for field in dataclasses.fields(job)}
    shown["max_attempts"] = max_attempts_text(job)
    return "\n".join(f"{name}: {text}" for name, text in shown.items())


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and "\n" in value:
        return "\n  " + value.rstrip().replace("\n", "\n  ")
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def to_json(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif isinstance(value, list):
        value = [dataclasses.asdict(item) for item in value]
    return json.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
