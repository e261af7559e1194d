"""The ``workerfleet`` CLI's commands: each reads its options, calls the
Repository and prints through :mod:`cli_format`.

A command returns an exit code; bad input raises :class:`CliError`, which
names the option to fix. Option values (durations, JSON, times) are parsed
here, by pure functions.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg

from workerfleet.durations import DurationError, format_duration, parse_duration
from workerfleet.worker import migrations
from workerfleet.worker.cli_format import (
    drift_table,
    job_details,
    jobs_table,
    schedules_json,
    schedules_table,
    stats_table,
    to_json,
    worker_stats_table,
    workers_table,
)
from workerfleet.worker.connector import DatabaseUnavailable
from workerfleet.worker.models import FINISHED_STATES, EnqueueRequest, Job, QueueStats, WorkerStats
from workerfleet.worker.repository import Repository

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_DATABASE_UNREACHABLE = 3
EXIT_DATABASE_ERROR = 4

ENQUEUE_BATCH_JOBS = 1_000
CLEAR_SCREEN = "\x1b[H\x1b[2J"


class CliError(Exception):
    """Bad input; exit 1 with this message."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")


Handler = Callable[[argparse.Namespace, Repository, TextIO], Awaitable[int]]


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


async def cmd_recount(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    rows = await repo.recount_jobs()
    if args.json:
        print(to_json(rows), file=out)
        return EXIT_OK
    drifted = [row for row in rows if row.drift]
    total = sum(row.counted for row in rows)
    if drifted:
        print(drift_table(drifted), file=out)
        print(f"\ncounters rebuilt from {total} jobs", file=out)
    else:
        print(f"counters agreed with the jobs table ({total} jobs)", file=out)
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
    # The same locked pass as the operator's: never at the same time as a Monitor's.
    recovered = await repo.recover(dead_after)
    reaped, rescued = recovered.reaped, recovered.rescued
    print(
        f"dead workers: {reaped.workers} (jobs released {reaped.jobs_released}, "
        f"dead-lettered {reaped.jobs_dead}); expired leases: rescued {rescued.rescued}, "
        f"dead-lettered {rescued.dead}",
        file=out,
    )
    return EXIT_OK


async def cmd_schedules_list(args: argparse.Namespace, repo: Repository, out: TextIO) -> int:
    rows = await repo.list_schedules(args.pool)
    now = datetime.now(UTC)
    print(schedules_json(rows, now) if args.json else schedules_table(rows, now), file=out)
    return EXIT_OK
