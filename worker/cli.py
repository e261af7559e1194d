"""``workerfleet``: operate a workerfleet queue from a shell.

Every command reads the database from ``--dsn`` or ``$WORKERFLEET_DSN`` and
never prints its password. Output is a plain table, or JSON with ``--json``.
This module holds the argument parser and the error-to-exit-code mapping;
the commands live in :mod:`cli_commands`, the pure formatting in
:mod:`cli_format`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import asyncpg

from workerfleet.worker.cli_commands import (
    EXIT_BAD_INPUT,
    EXIT_DATABASE_ERROR,
    EXIT_DATABASE_UNREACHABLE,
    EXIT_OK,
    CliError,
    Handler,
    cmd_enqueue,
    cmd_jobs_cancel,
    cmd_jobs_list,
    cmd_jobs_prune,
    cmd_jobs_retry,
    cmd_jobs_show,
    cmd_migrate,
    cmd_recount,
    cmd_recover,
    cmd_schedules_list,
    cmd_stats,
    cmd_workers_list,
)
from workerfleet.worker.connector import Connector, DatabaseUnavailable, InvalidDsn
from workerfleet.worker.models import FINISHED_STATES, JOB_STATES, InvalidJobError
from workerfleet.worker.repository import Repository

DSN_ENV = "WORKERFLEET_DSN"
WATCH_INTERVAL_DEFAULT = "2s"
DEAD_AFTER_DEFAULT = "1m"

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
    recount = db_commands.add_parser(
        "recount",
        help="rebuild the depth counters from the jobs table (after writes made with "
        "triggers off); prints what had drifted",
    )
    recount.add_argument("--json", action="store_true", help="every queue and state as JSON")
    recount.set_defaults(handler=cmd_recount)

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

    schedules = commands.add_parser("schedules", help="periodic jobs and their next runs")
    schedule_commands = schedules.add_subparsers(
        dest="schedules_command", required=True, metavar="ACTION"
    )
    schedule_list = schedule_commands.add_parser(
        "list",
        help="every schedule of the database (WorkerPools' spec.schedules and @task(schedule=...)"
        " of handlers modules), its next and last run",
    )
    schedule_list.add_argument("--pool", help="only this pool (namespace/name for WorkerPools)")
    schedule_list.add_argument("--json", action="store_true")
    schedule_list.set_defaults(handler=cmd_schedules_list)

    recover = commands.add_parser(
        "recover", help="once: mark silent workers dead, release their jobs, rescue expired leases"
    )
    recover.add_argument("--dead-after", default=DEAD_AFTER_DEFAULT, metavar="DURATION")
    recover.set_defaults(handler=cmd_recover)
    return parser


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
