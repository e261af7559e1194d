"""``workerfleet``: operate a workerfleet queue from a shell.

Every command reads the database from ``--dsn`` or ``$WORKERFLEET_DSN`` and
never prints its password. Output is a plain table, or JSON with ``--json``.
The formatting helpers are pure functions; commands only fetch and print.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg

from workerfleet.durations import DurationError, format_duration, parse_duration
from workerfleet.worker import migrations
from workerfleet.worker.connector import Connector, DatabaseUnavailable, InvalidDsn
from workerfleet.worker.models import (
    FINISHED_STATES,
    JOB_STATES,
    EnqueueRequest,
    InvalidJobError,
    Job,
    QueueStats,
    WorkerRow,
    WorkerStats,
)
from workerfleet.worker.repository import Repository

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_DATABASE_UNREACHABLE = 3
EXIT_DATABASE_ERROR = 4

DSN_ENV = "WORKERFLEET_DSN"
WATCH_INTERVAL_DEFAULT = "2s"
DEAD_AFTER_DEFAULT = "1m"
ENQUEUE_BATCH_JOBS = 1_000
ERROR_COLUMN_MAX_CHARS = 60
CLEAR_SCREEN = "\x1b[H\x1b[2J"

# Model fields as the options that set them, so an error names what to fix.
FIELD_OPTIONS = {
    "queue": "QUEUE",
    "task": "TASK",
    "priority": "--priority",
    "run_at": "--run-at",
    "delay_seconds": "--delay",
    "max_attempts": "--max-attempts",
    "unique_key": "--unique-key",
    "state": "--state",
    "older_than_seconds": "--older-than",
    "dead_after_seconds": "--dead-after",
}

EPILOG = f"""\
database:
  --dsn or ${DSN_ENV}, e.g. postgresql://user:password@host:5432/db
  (the password is never printed)

exit codes:
  0  success
  1  bad input: an invalid option value (the message names the option), or
     the job asked for does not exist or is not in a state that allows it
  2  usage error: unknown command or option, missing argument, not a number
  3  database unreachable (refused, timed out, bad credentials)
  4  database error, e.g. the schema is missing: run `workerfleet db migrate`
"""


class CliError(Exception):
    """Bad input; exit 1 with this message."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")


Handler = Callable[[argparse.Namespace, Repository, TextIO], Awaitable[int]]


# -- pure formatting -----------------------------------------------------------


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


# -- parsing option values -----------------------------------------------------


def parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError("--payload", f"not valid JSON ({error}): {text!r}") from error


def parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise CliError(
            "--run-at", f"not an ISO 8601 time: {text!r} (e.g. 2030-01-01T09:00:00+00:00)"
        ) from error
    if moment.utcoffset() is None:
        raise CliError("--run-at", f"{text!r} has no timezone: add one, e.g. +00:00 or Z")
    return moment


def parse_seconds(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise CliError(option, str(error)) from error


# -- commands ------------------------------------------------------------------


async def cmd_migrate(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    applied = await migrations.migrate(repo.connector)
    print(f"applied {', '.join(applied)}" if applied else "schema up to date", file=out)
    return EXIT_OK


async def cmd_enqueue(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    if args.count < 1:
        raise CliError("--count", f"must be at least 1, got {args.count}")
    if args.count > 1 and args.unique_key is not None:
        raise CliError("--count", "more than one job cannot share one --unique-key")
    delay = None if args.delay is None else parse_seconds(args.delay, "--delay")
    request = EnqueueRequest(
        queue=args.queue,
        task=args.task,
        payload=parse_payload(args.payload),
        priority=args.priority,
        run_at=parse_run_at(args.run_at),
        delay_seconds=delay,
        max_attempts=args.max_attempts,
        unique_key=args.unique_key,
    )
    ids: list[int] = []
    for start in range(0, args.count, ENQUEUE_BATCH_JOBS):
        batch = min(ENQUEUE_BATCH_JOBS, args.count - start)
        ids += await repo.enqueue_many([request] * batch)
    if args.json:
        print(json.dumps({"queue": args.queue, "ids": ids}), file=out)
    elif len(ids) == 1:
        print(ids[0], file=out)
    else:
        print(f"enqueued {len(ids)} jobs on {args.queue} (ids {min(ids)}..{max(ids)})", file=out)
    return EXIT_OK


async def cmd_stats(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    dead_after = parse_seconds(args.dead_after, "--dead-after")
    interval = None if args.watch is None else parse_seconds(args.watch, "--watch")
    while True:
        try:
            queue_stats = await repo.queue_stats()
            worker_stats = await repo.worker_stats(dead_after)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
            if interval is None:
                raise DatabaseUnavailable(f"lost the database: {error}") from error
            print(f"database unreachable ({error}); retrying", file=sys.stderr)
        else:
            _print_stats(args, queue_stats, worker_stats, out, clear=interval is not None)
        if interval is None:
            return EXIT_OK
        await asyncio.sleep(interval)


def _print_stats(
    args: argparse.Namespace,
    queue_stats: list[QueueStats],
    worker_stats: list[WorkerStats],
    out: TextIO,
    *,
    clear: bool,
) -> None:
    if args.json:
        document = {
            "time": datetime.now(UTC).isoformat(),
            "queues": [dataclasses.asdict(row) for row in queue_stats],
            "workers": [dataclasses.asdict(row) for row in worker_stats],
        }
        print(json.dumps(document, sort_keys=True), file=out, flush=True)
        return
    if clear and out.isatty():
        out.write(CLEAR_SCREEN)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"{stamp}\n\n{stats_table(queue_stats)}\n\n{worker_stats_table(worker_stats)}\n",
        file=out,
        flush=True,
    )


async def cmd_jobs_list(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    if args.limit < 1:
        raise CliError("--limit", f"must be at least 1, got {args.limit}")
    jobs = await repo.list_jobs(
        queue=args.queue, state=args.state, task=args.task, limit=args.limit
    )
    print(to_json(jobs) if args.json else jobs_table(jobs), file=out)
    return EXIT_OK


async def _existing_job(repo: Repository, job_id: int) -> Job:
    job = await repo.get_job(job_id)
    if job is None:
        raise CliError("JOB_ID", f"no job with id {job_id}")
    return job


async def cmd_jobs_show(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    job = await _existing_job(repo, args.job_id)
    print(to_json(job) if args.json else job_details(job), file=out)
    return EXIT_OK


async def cmd_jobs_retry(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    job = await _existing_job(repo, args.job_id)
    if not await repo.retry_dead(job.id):
        if job.state in ("dead", "cancelled"):
            raise CliError("JOB_ID", f"job {job.id} has a unique key that another live job holds")
        raise CliError("JOB_ID", f"job {job.id} is {job.state}: only dead or cancelled jobs retry")
    print(f"job {job.id} is pending again (attempts reset)", file=out)
    return EXIT_OK


async def cmd_jobs_cancel(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    job = await _existing_job(repo, args.job_id)
    if not await repo.cancel(job.id):
        raise CliError(
            "JOB_ID", f"job {job.id} is {job.state}: only pending or running jobs cancel"
        )
    print(f"job {job.id} cancelled", file=out)
    return EXIT_OK


async def cmd_jobs_prune(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    age = parse_seconds(args.older_than, "--older-than")
    states = args.state or list(FINISHED_STATES)
    deleted = await repo.prune_finished(age, states)
    print(f"deleted {deleted} finished jobs older than {format_duration(age)}", file=out)
    return EXIT_OK


async def cmd_workers_list(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    workers = await repo.list_workers(args.pool)
    if args.json:
        print(to_json(workers), file=out)
    else:
        print(workers_table(workers, datetime.now(UTC)), file=out)
    return EXIT_OK


async def cmd_recover(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    dead_after = parse_seconds(args.dead_after, "--dead-after")
    reaped = await repo.reap_dead_workers(dead_after)
    rescued = await repo.rescue_expired_leases()
    print(
        f"dead workers: {reaped.workers} (jobs released {reaped.jobs_released}, "
        f"dead-lettered {reaped.jobs_dead}); expired leases: rescued {rescued.rescued}, "
        f"dead-lettered {rescued.dead}",
        file=out,
    )
    return EXIT_OK


# -- the parser ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workerfleet",
        description="Operate a workerfleet PostgreSQL job queue.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn", default=None, help=f"PostgreSQL DSN (default: ${DSN_ENV})", metavar="DSN"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="schema management")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser(
        "migrate", help="apply missing migrations (idempotent, safe to run concurrently)"
    ).set_defaults(handler=cmd_migrate)

    enqueue = commands.add_parser("enqueue", help="put a job (or --count jobs) on a queue")
    enqueue.add_argument("queue", metavar="QUEUE", help="queue name ([a-z0-9][a-z0-9_.-]*)")
    enqueue.add_argument("task", metavar="TASK", help="task (handler) name")
    enqueue.add_argument("--payload", metavar="JSON", help="job payload as JSON")
    enqueue.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--delay", metavar="DURATION", help="run after this long, e.g. 30s, 5m")
    when.add_argument("--run-at", metavar="TIME", help="run at this ISO 8601 time with timezone")
    enqueue.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="default: the WORKERFLEET_MAX_ATTEMPTS of the worker that claims it (5 unless set)",
    )
    enqueue.add_argument(
        "--unique-key", metavar="KEY", help="return the live job holding KEY instead"
    )
    enqueue.add_argument("--count", type=int, default=1, help="enqueue N copies (demos)")
    enqueue.add_argument("--json", action="store_true", help="print the ids as JSON")
    enqueue.set_defaults(handler=cmd_enqueue)

    stats = commands.add_parser("stats", help="depth per queue and state, and workers per pool")
    stats.add_argument(
        "--watch",
        nargs="?",
        const=WATCH_INTERVAL_DEFAULT,
        metavar="INTERVAL",
        help=f"refresh every INTERVAL (default {WATCH_INTERVAL_DEFAULT}) until Ctrl-C",
    )
    stats.add_argument("--json", action="store_true", help="one JSON document per refresh")
    stats.add_argument(
        "--dead-after",
        default=DEAD_AFTER_DEFAULT,
        metavar="DURATION",
        help=f"count a silent worker as dead after this (default {DEAD_AFTER_DEFAULT})",
    )
    stats.set_defaults(handler=cmd_stats)

    jobs = commands.add_parser("jobs", help="inspect and act on jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = job_commands.add_parser("list", help="newest jobs first")
    listing.add_argument("--queue")
    listing.add_argument("--state", choices=JOB_STATES)
    listing.add_argument("--task")
    listing.add_argument("--limit", type=int, default=50, help="default 50")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_jobs_list, field_options={"queue": "--queue"})
    for name, handler, text in [
        ("show", cmd_jobs_show, "every field of one job"),
        ("retry", cmd_jobs_retry, "a dead or cancelled job back to pending, attempts reset"),
        ("cancel", cmd_jobs_cancel, "cancel a pending or running job"),
    ]:
        action = job_commands.add_parser(name, help=text)
        action.add_argument("job_id", type=int, metavar="JOB_ID")
        if name == "show":
            action.add_argument("--json", action="store_true")
        action.set_defaults(handler=handler)
    prune = job_commands.add_parser("prune", help="delete finished jobs older than an age")
    prune.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 24h, 14d")
    prune.add_argument(
        "--state", action="append", choices=FINISHED_STATES, help="repeatable; default all"
    )
    prune.set_defaults(handler=cmd_jobs_prune)

    workers = commands.add_parser("workers", help="inspect workers")
    worker_commands = workers.add_subparsers(
        dest="workers_command", required=True, metavar="ACTION"
    )
    worker_list = worker_commands.add_parser("list", help="worker rows, by pool")
    worker_list.add_argument("--pool")
    worker_list.add_argument("--json", action="store_true")
    worker_list.set_defaults(handler=cmd_workers_list)

    recover = commands.add_parser(
        "recover", help="once: mark silent workers dead, release their jobs, rescue expired leases"
    )
    recover.add_argument("--dead-after", default=DEAD_AFTER_DEFAULT, metavar="DURATION")
    recover.set_defaults(handler=cmd_recover)
    return parser


# -- running -------------------------------------------------------------------


async def _run(args: argparse.Namespace, dsn: str, out: TextIO) -> int:
    connector = await Connector.open(dsn, min_size=1, max_size=2)
    try:
        handler: Handler = args.handler
        return await handler(args, Repository(connector), out)
    finally:
        await connector.close()


def _error(message: str, code: int) -> int:
    print(f"workerfleet: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    dsn = args.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        return _error(f"--dsn: no database given: pass --dsn or set ${DSN_ENV}", EXIT_BAD_INPUT)
    try:
        return asyncio.run(_run(args, dsn, out or sys.stdout))
    except KeyboardInterrupt:
        return EXIT_OK
    except CliError as error:
        return _error(str(error), EXIT_BAD_INPUT)
    except InvalidJobError as error:
        overrides: dict[str, str] = getattr(args, "field_options", {})
        option = overrides.get(error.field) or FIELD_OPTIONS.get(error.field, error.field)
        return _error(f"{option}: {str(error).split(': ', 1)[1]}", EXIT_BAD_INPUT)
    except InvalidDsn as error:
        return _error(f"--dsn: {error}", EXIT_BAD_INPUT)
    except DatabaseUnavailable as error:
        return _error(str(error), EXIT_DATABASE_UNREACHABLE)
    except (
        asyncpg.UndefinedTableError,
        asyncpg.InvalidSchemaNameError,
        asyncpg.UndefinedFunctionError,
    ) as error:
        return _error(
            f"the workerfleet schema is missing or out of date ({error}): "
            "run `workerfleet db migrate`",
            EXIT_DATABASE_ERROR,
        )
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
        return _error(f"lost the database: {error}", EXIT_DATABASE_UNREACHABLE)
    except asyncpg.PostgresError as error:
        return _error(f"database error: {error}", EXIT_DATABASE_ERROR)


if __name__ == "__main__":
    sys.exit(main())
