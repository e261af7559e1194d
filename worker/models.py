"""Rows of the queue as frozen dataclasses, and the validation of what callers send.

Every dataclass that mirrors a query's row has ``from_row`` taking an asyncpg
``Record`` (or any mapping with the same keys). Validation here is pure: it
raises :class:`InvalidJobError` naming the field and the fix before anything
reaches the database (the schema's CHECK constraints are the backstop).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from workerfleet.worker import cron

QUEUE_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TASK_NAME_MAX_CHARS: Final = 200
# PostgreSQL integer bounds: priority and max_attempts are int4 columns.
INT4_MIN: Final = -(2**31)
INT4_MAX: Final = 2**31 - 1
DEFAULT_MAX_ATTEMPTS: Final = 5
# How far back queue_stats reads the per-minute failure counts (job_failures).
FAILURE_HISTORY_MINUTES: Final = 60

JOB_STATES: Final = ("pending", "running", "succeeded", "dead", "cancelled")
FINISHED_STATES: Final = ("succeeded", "dead", "cancelled")
WORKER_STATES: Final = ("online", "draining", "offline", "dead")

JobState = Literal["pending", "running", "succeeded", "dead", "cancelled"]
WorkerState = Literal["online", "draining", "offline", "dead"]
Outcome = Literal["retried", "dead", "fenced"]

_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_Row = TypeVar("_Row")


class InvalidJobError(ValueError):
    """A job or query argument that cannot be valid; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def validate_queue_name(name: object, field: str = "queue") -> str:
    """``name`` if it is a valid queue name, else InvalidJobError naming ``field``."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise InvalidJobError(
            field,
            f"invalid queue name {name!r}: use 1 to 63 characters of a-z, 0-9, '_', '.' "
            "or '-', starting with a letter or digit",
        )
    return name


def validate_task_name(name: object, field: str = "task") -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= TASK_NAME_MAX_CHARS:
        raise InvalidJobError(
            field, f"invalid task name {name!r}: use 1 to {TASK_NAME_MAX_CHARS} characters"
        )
    return name


def validate_job_state(state: object, field: str = "state") -> JobState:
    if state not in JOB_STATES:
        raise InvalidJobError(field, f"unknown job state {state!r}: use one of {JOB_STATES}")
    return state


def validate_worker_state(state: object, field: str = "state") -> WorkerState:
    if state not in WORKER_STATES:
        raise InvalidJobError(field, f"unknown worker state {state!r}: use one of {WORKER_STATES}")
    return state


def validate_seconds(value: object, field: str) -> float:
    """A finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(field, f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidJobError(field, f"must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _validate_int(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(field, f"expected an integer, got {value!r}")
    if not minimum <= value <= INT4_MAX:
        raise InvalidJobError(field, f"must be between {minimum} and {INT4_MAX}, got {value}")
    return value


def validate_max_attempts(value: object, field: str = "max_attempts") -> int:
    return _validate_int(value, field, 1)


def _from_row(cls: type[_Row], row: Mapping[str, Any]) -> _Row:
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class EnqueueRequest:
    """One job to enqueue; validated on construction.

    ``run_at`` (timezone-aware) and ``delay_seconds`` are alternatives; with
    neither the job is due now. ``max_attempts=None`` leaves it to the worker
    that first claims the job (its WORKERFLEET_MAX_ATTEMPTS). A ``unique_key``
    already pending or running in the queue makes enqueue return that job's id
    instead of creating another.
    """

    queue: str
    task: str
    payload: Any = None
    priority: int = 0
    run_at: datetime | None = None
    delay_seconds: float | None = None
    max_attempts: int | None = None
    unique_key: str | None = None
    trace_context: Mapping[str, str] | None = None
    """The enqueuer's trace context (W3C carrier); None: the current span's, if any."""

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        validate_task_name(self.task)
        _validate_int(self.priority, "priority", INT4_MIN)
        if self.max_attempts is not None:
            validate_max_attempts(self.max_attempts)
        if self.run_at is not None and self.delay_seconds is not None:
            raise InvalidJobError("run_at", "give run_at or delay_seconds, not both")
        if self.run_at is not None and (
            not isinstance(self.run_at, datetime) or self.run_at.utcoffset() is None
        ):
            raise InvalidJobError(
                "run_at", f"must be a timezone-aware datetime, got {self.run_at!r}"
            )
        if self.delay_seconds is not None:
            validate_seconds(self.delay_seconds, "delay_seconds")
        if self.unique_key is not None and (
            not isinstance(self.unique_key, str) or not self.unique_key
        ):
            raise InvalidJobError(
                "unique_key", f"must be a non-empty string or None, got {self.unique_key!r}"
            )


@dataclass(frozen=True)
class JobRef:
    """What fencing matches on: a claim of one job by one worker, at one attempt."""

    id: int
    worker_id: str
    attempt: int


@dataclass(frozen=True)
class Job:
    """A row of ``workerfleet.jobs``.

    ``worker_id`` is the holder while running and, afterwards, the worker that
    ran it last. ``payload`` and ``result`` are decoded JSON.
    """

    id: int
    queue: str
    task: str
    payload: Any
    priority: int
    state: str
    attempt: int
    max_attempts: int | None
    """None until the first claim when enqueued without one (see ``claim``)."""
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    last_traceback: str | None
    result: Any
    unique_key: str | None
    rescues: int  # how often a run of it was lost and it was put back
    trace_context: Any = None
    """The enqueuer's trace context (a W3C carrier such as {"traceparent": ...}), or None."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        values = {f.name: row[f.name] for f in fields(cls) if f.name != "trace_context"}
        # Optional: rows of a schema before migration 0010 have no such column.
        return cls(**values, trace_context=row.get("trace_context"))

    @property
    def ref(self) -> JobRef:
        if self.worker_id is None:
            raise ValueError(f"job {self.id} has never been claimed, so it has no JobRef")
        return JobRef(id=self.id, worker_id=self.worker_id, attempt=self.attempt)


@dataclass(frozen=True)
class MinuteFailures:
    """Failures of one queue in one minute, ``minutes_ago`` minutes back (0: this minute).

    ``failed`` counts failed attempts, retried or not, including attempts lost
    with their worker (lease expired, worker dead); ``dead`` the jobs among
    them (and those buried) that were dead-lettered.
    """

    minutes_ago: int
    failed: int
    dead: int


@dataclass(frozen=True)
class QueueStats:
    """Depth, throughput and recent failures of one queue.

    ``pending`` counts jobs due now; ``scheduled`` counts pending jobs whose
    ``run_at`` is still in the future (the two are disjoint).
    ``oldest_pending_seconds`` is how long the oldest due job has waited since
    its ``run_at``; None when nothing is due. ``failures`` holds the minutes of
    the last FAILURE_HISTORY_MINUTES that had any, newest first.
    """

    queue: str
    pending: int
    scheduled: int
    running: int
    succeeded: int
    dead: int
    cancelled: int
    oldest_pending_seconds: float | None
    finished_last_minute: int
    failures: tuple[MinuteFailures, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueueStats:
        failures = tuple(
            MinuteFailures(int(ago), int(failed), int(dead))
            for ago, failed, dead in zip(
                row["failure_minutes_ago"] or (),
                row["failed_per_minute"] or (),
                row["dead_per_minute"] or (),
                strict=True,
            )
        )
        plain = {f.name: row[f.name] for f in fields(cls) if f.name != "failures"}
        return cls(**plain, failures=failures)

    def failed_within(self, minutes: int) -> int:
        """Failed attempts in this minute and the ``minutes - 1`` before it."""
        return sum(m.failed for m in self.failures if m.minutes_ago < minutes)

    def dead_within(self, minutes: int) -> int:
        """Jobs dead-lettered in this minute and the ``minutes - 1`` before it."""
        return sum(m.dead for m in self.failures if m.minutes_ago < minutes)


@dataclass(frozen=True)
class WorkerStats:
    """Workers of one pool. ``online`` = ``busy`` + ``idle``; a worker silent past
    the threshold counts as ``dead`` whatever its recorded state. ``running_jobs``
    counts the running jobs the pool's workers hold, a dead one's included."""

    pool: str
    online: int
    busy: int
    idle: int
    draining: int
    dead: int
    holding: int = 0
    """Online or draining workers that held a job at their last heartbeat (busy ones included)."""
    running_jobs: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkerStats:
        return _from_row(cls, row)


@dataclass(frozen=True)
class WorkerRow:
    """A row of ``workerfleet.workers``."""

    id: str
    pool: str
    queues: tuple[str, ...]
    pod: str | None
    started_at: datetime
    heartbeat_at: datetime
    state: str
    current_jobs: int
    jobs_succeeded: int
    jobs_failed: int
    version: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkerRow:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["queues"] = tuple(values["queues"] or ())
        return cls(**values)


@dataclass(frozen=True)
class CountDrift:
    """One (queue, state) after a recount: the true count, and how far the
    depth counters were off (recorded - true; 0 when they agreed)."""

    queue: str
    state: str
    counted: int
    drift: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CountDrift:
        return _from_row(cls, row)


@dataclass(frozen=True)
class HeartbeatResult:
    """What a heartbeat learned: the running jobs still held, and the worker row's state
    (``draining`` when the operator asked for a drain; None when the row is gone)."""

    held: frozenset[int]
    worker_state: str | None


@dataclass(frozen=True)
class PoolWorker:
    """A live worker of a pool as the operator sees it when choosing scale-in victims."""

    id: str
    pod: str | None
    state: str
    current_jobs: int
    """Jobs held at its last heartbeat."""
    drain_requested: bool
    """The operator asked it to drain (and has not taken that back)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PoolWorker:
        return _from_row(cls, row)


@dataclass(frozen=True)
class RescueResult:
    """Expired leases handled: ``rescued`` went back to pending, ``dead`` ran out of attempts."""

    rescued: int
    dead: int


@dataclass(frozen=True)
class ReapResult:
    """Workers newly marked dead and what happened to their running jobs."""

    workers: int
    jobs_released: int
    jobs_dead: int = 0
    worker_ids: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecoveryResult:
    """One recovery pass over a database: expired leases rescued, then dead workers reaped."""

    rescued: RescueResult
    reaped: ReapResult


def sort_claimed(jobs: Sequence[Job]) -> list[Job]:
    """Claim order (priority desc, then run_at, then id): RETURNING keeps no order."""
    return sorted(jobs, key=lambda job: (-job.priority, job.run_at, job.id))


SCHEDULE_SOURCES: Final = ("operator", "worker")
# A scheduler acts within milliseconds of a run's time, but a busy one may be a few
# seconds late: a shorter deadline would skip runs nobody missed (CronJob warns alike).
MIN_STARTING_DEADLINE_SECONDS: Final = 10.0


def validate_starting_deadline(seconds: float, field: str = "starting_deadline") -> float:
    validate_seconds(seconds, field)
    if seconds < MIN_STARTING_DEADLINE_SECONDS:
        raise InvalidJobError(
            field,
            f"must be at least {MIN_STARTING_DEADLINE_SECONDS:g}s, got {seconds:g}s: a "
            "scheduler may be a few seconds late, and a shorter deadline skips runs",
        )
    return seconds


ScheduleSource = Literal["operator", "worker"]


@dataclass(frozen=True)
class ScheduleRow:
    """A row of ``workerfleet.schedules`` and the state of its last run's job.

    ``last_job_state`` is None when no run was enqueued yet, or when the job
    was pruned since.
    """

    pool: str
    name: str
    source: str
    queue: str
    task: str
    cron: str
    time_zone: str
    payload: Any
    priority: int
    max_attempts: int | None
    starting_deadline_seconds: float | None
    suspended: bool
    since: datetime
    last_scheduled_at: datetime | None
    last_job_id: int | None
    missed_runs: int
    last_missed_at: datetime | None
    next_run_at: datetime | None
    updated_at: datetime
    last_job_state: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleRow:
        return _from_row(cls, row)


@dataclass(frozen=True)
class ScheduleRun:
    """A row of ``workerfleet.schedule_runs``: one run enqueued, with its job's state."""

    pool: str
    schedule: str
    scheduled_at: datetime
    job_id: int
    enqueued_at: datetime
    job_state: str | None
    job_created_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleRun:
        return _from_row(cls, row)


@dataclass(frozen=True)
class ScheduleDefinition:
    """A schedule as declared (spec.schedules or @task(schedule=...)), ready to register."""

    name: str
    queue: str
    task: str
    cron: str
    time_zone: str = "UTC"
    payload: Any = None
    priority: int = 0
    max_attempts: int | None = None
    starting_deadline_seconds: float | None = None
    suspended: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= TASK_NAME_MAX_CHARS:
            raise InvalidJobError(
                "name", f"a schedule needs a name of 1 to 200 characters, got {self.name!r}"
            )
        validate_queue_name(self.queue)
        validate_task_name(self.task)
        _validate_int(self.priority, "priority", INT4_MIN)
        if self.max_attempts is not None:
            validate_max_attempts(self.max_attempts)
        if self.starting_deadline_seconds is not None:
            validate_starting_deadline(self.starting_deadline_seconds, "starting_deadline_seconds")
        try:
            cron.parse(self.cron, "UTC")
        except cron.CronError as error:
            raise InvalidJobError("cron", str(error)) from None
        try:
            cron.time_zone(self.time_zone)
        except cron.CronError as error:
            raise InvalidJobError("time_zone", str(error)) from None


@dataclass(frozen=True)
class Registration:
    """What registering one schedule did: ``written`` (new or changed), or ``held_by`` the
    other source under the same name (then it was left alone)."""

    name: str
    written: bool
    held_by: str | None
    source: str

    @property
    def taken(self) -> bool:
        return self.held_by is not None and self.held_by != self.source


@dataclass(frozen=True)
class Advance:
    """What advancing a schedule did: ``advanced`` false when another scheduler (or an
    earlier call) already had; ``job_id`` of the run enqueued, if any."""

    advanced: bool
    job_id: int | None
