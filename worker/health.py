"""What the worker knows about itself, and the decisions drawn from it.

``RuntimeState`` is the one record the job loop, the heartbeat and the listener
write and the HTTP server reads. Everything else here is a pure function of it
(plus the clock passed in): liveness, readiness, the seed-000 ``/health``
report and the periodic health log line.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workerfleet.worker.models import QueueStats

Phase = Literal["starting", "running", "draining", "stopped"]
Status = Literal["healthy", "degraded", "unhealthy"]

# A side task that has not ticked for this many of its intervals (plus slack for a
# slow event loop) is considered stuck, and liveness fails.
LIVENESS_MISSED_INTERVALS = 4
LIVENESS_SLACK_SECONDS = 30.0  # > a claim timeout plus the longest reconnect backoff
HTTP_OK = 200
HTTP_UNAVAILABLE = 503
QUEUE_STATES = ("pending", "scheduled", "running", "succeeded", "dead", "cancelled")
BYTES_PER_MIB = 1024 * 1024


JobKey = tuple[int, int]  # (job id, attempt): the same job may come back to us later


@dataclass
class RunningJob:
    job_id: int
    attempt: int
    queue: str
    task: str
    started_at: dt.datetime
    started_monotonic: float


@dataclass
class Counts:
    succeeded: int = 0
    failed: int = 0  # failed attempts: retried + dead
    retried: int = 0
    dead: int = 0
    fenced: int = 0
    released: int = 0


@dataclass
class DatabaseStatus:
    connected: bool | None = None  # None: not checked yet
    last_check: dt.datetime | None = None
    last_error: str | None = None
    # Monotonic time since when every call has reached it (None while unreachable).
    up_since: float | None = None


@dataclass
class RuntimeState:
    worker_id: str
    started_at: dt.datetime
    started_monotonic: float
    concurrency: int
    phase: Phase = "starting"
    running: dict[JobKey, RunningJob] = field(default_factory=dict)
    # Running jobs the heartbeat found taken away: their outcome will be dropped.
    fenced_ids: set[JobKey] = field(default_factory=set)
    counts: Counts = field(default_factory=Counts)
    last_loop_tick: float | None = None
    last_heartbeat_tick: float | None = None
    last_heartbeat_ok: float | None = None
    last_heartbeat_at: dt.datetime | None = None
    database: DatabaseStatus = field(default_factory=DatabaseStatus)
    listener_connected: bool = False
    # The operator asked this worker to drain before a scale-in (its row is 'draining'):
    # it claims nothing and reports unready until the pod goes or the request is taken back.
    drain_requested: bool = False
    queue_stats: Sequence[QueueStats] = ()
    queue_stats_at: dt.datetime | None = None

    def database_ok(self, now: dt.datetime, now_monotonic: float | None = None) -> None:
        up_since = self.database.up_since if self.database.connected else None
        if up_since is None:
            up_since = time.monotonic() if now_monotonic is None else now_monotonic
        self.database = DatabaseStatus(connected=True, last_check=now, up_since=up_since)

    def database_failed(self, now: dt.datetime, error: BaseException) -> None:
        self.database = DatabaseStatus(
            connected=False, last_check=now, last_error=f"{type(error).__name__}: {error}"
        )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def _stale(last: float | None, now: float, interval_seconds: float) -> bool:
    limit = LIVENESS_MISSED_INTERVALS * interval_seconds + LIVENESS_SLACK_SECONDS
    return last is None or now - last > limit


def liveness(
    state: RuntimeState, now: float, poll_interval: float, heartbeat_interval: float
) -> Verdict:
    """Alive = the job loop and the heartbeat keep ticking.

    A database outage does not fail liveness (a restart would not bring the
    database back); a wedged event loop or a stuck side task does.
    """
    if state.phase == "starting":
        return Verdict(True, "starting")
    if state.phase == "running" and _stale(state.last_loop_tick, now, poll_interval):
        return Verdict(False, "job loop has not ticked")
    if state.phase != "stopped" and _stale(state.last_heartbeat_tick, now, heartbeat_interval):
        return Verdict(False, "heartbeat has not ticked")
    return Verdict(True, "ok")


def readiness(state: RuntimeState) -> Verdict:
    """Ready = running (not starting or draining), not asked by the operator to drain, and
    the database answered last time."""
    if state.phase != "running":
        return Verdict(False, state.phase)
    if state.drain_requested:
        return Verdict(False, "draining: the operator chose this worker for a scale-in")
    if state.database.connected is not True:
        return Verdict(False, "database unreachable: " + (state.database.last_error or "unchecked"))
    return Verdict(True, "ok")


def overall_status(alive: Verdict, state: RuntimeState) -> Status:
    """Seed 000's levels: infrastructure broken -> unhealthy; worker not running -> degraded."""
    if not alive.ok or state.database.connected is False:
        return "unhealthy"
    if state.phase != "running" or not state.listener_connected:
        return "degraded"
    return "healthy"


def http_code(status: Status) -> int:
    return HTTP_UNAVAILABLE if status == "unhealthy" else HTTP_OK


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def queue_stat_rows(stats: Sequence[QueueStats]) -> list[dict[str, Any]]:
    """Seed 000's ``jobs.stats``: one {queue, status, count} per queue and state."""
    return [
        {"queue": row.queue, "status": name, "count": getattr(row, name)}
        for row in stats
        for name in QUEUE_STATES
    ]


def queue_summaries(stats: Sequence[QueueStats]) -> dict[str, dict[str, Any]]:
    return {
        row.queue: {
            **{name: getattr(row, name) for name in QUEUE_STATES},
            "oldestPendingSeconds": row.oldest_pending_seconds,
            "finishedLastMinute": row.finished_last_minute,
        }
        for row in stats
    }


@dataclass(frozen=True)
class ReportContext:
    """Facts the report needs that are not in RuntimeState."""

    now: dt.datetime
    now_monotonic: float
    pool: str
    queues: Sequence[str]
    version: str
    config: dict[str, Any]
    memory: dict[str, int]
    environment: dict[str, Any]
    poll_interval: float
    heartbeat_interval: float


def build_report(state: RuntimeState, ctx: ReportContext) -> tuple[int, dict[str, Any]]:
    """The /health body (seed 000's shape) and its HTTP status code."""
    alive = liveness(state, ctx.now_monotonic, ctx.poll_interval, ctx.heartbeat_interval)
    status = overall_status(alive, state)
    uptime = round(ctx.now_monotonic - state.started_monotonic, 3)
    current = [
        {
            "id": job.job_id,
            "queue": job.queue,
            "task": job.task,
            "attempt": job.attempt,
            "startedAt": _iso(job.started_at),
            "runningSeconds": round(ctx.now_monotonic - job.started_monotonic, 3),
            "fenced": (job.job_id, job.attempt) in state.fenced_ids,
        }
        for job in sorted(state.running.values(), key=lambda job: job.started_monotonic)
    ]
    heartbeat_age = (
        None
        if state.last_heartbeat_ok is None
        else round(ctx.now_monotonic - state.last_heartbeat_ok, 3)
    )
    counts = state.counts
    worker = {
        "id": state.worker_id,
        "pool": ctx.pool,
        "queues": list(ctx.queues),
        "version": ctx.version,
        "status": state.phase,
        "isShuttingDown": state.phase in ("draining", "stopped"),
        "ready": readiness(state).ok,
        "live": alive.ok,
        "liveReason": alive.reason,
        "currentJob": current[0] if current else None,
        "currentJobs": current,
        "concurrency": state.concurrency,
        "jobsProcessed": counts.succeeded + counts.failed,
        "jobs": {
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "retried": counts.retried,
            "dead": counts.dead,
            "fenced": counts.fenced,
            "released": counts.released,
        },
        "startedAt": _iso(state.started_at),
        "uptime": uptime,
        "lastHeartbeat": _iso(state.last_heartbeat_at),
        "heartbeatAgeSeconds": heartbeat_age,
        "listener": {"connected": state.listener_connected},
        "memoryUsage": ctx.memory,
        "config": ctx.config,
    }
    body = {
        "status": status,
        "timestamp": _iso(ctx.now),
        "uptime": uptime,
        "worker": worker,
        "database": {
            "connected": state.database.connected is True,
            "lastCheck": _iso(state.database.last_check),
            "lastError": state.database.last_error,
        },
        "jobs": {
            "stats": queue_stat_rows(state.queue_stats),
            "queues": queue_summaries(state.queue_stats),
            "lastCheck": _iso(state.queue_stats_at),
        },
        "memory": ctx.memory,
        "environment": ctx.environment,
    }
    return http_code(status), body


def health_log_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The periodic health log line (seeds 000 and 004): the report, flattened."""
    worker = report["worker"]
    return {
        "status": report["status"],
        "uptime": report["uptime"],
        "worker_state": worker["status"],
        "database": report["database"]["connected"],
        "current_jobs": len(worker["currentJobs"]),
        "jobs_processed": worker["jobsProcessed"],
        "jobs": worker["jobs"],
        "memory_rss_mb": round(report["memory"].get("rss", 0) / BYTES_PER_MIB, 1),
        "queues": {
            name: {key: summary[key] for key in ("pending", "running", "dead")}
            | {"oldest_pending_seconds": summary["oldestPendingSeconds"]}
            for name, summary in report["jobs"]["queues"].items()
        },
    }


def read_memory_usage() -> dict[str, int]:
    """rss, vms and peak rss in bytes (from /proc on Linux, getrusage elsewhere)."""
    usage = {"peakRss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmSize"):
                    usage["rss" if key == "VmRSS" else "vms"] = int(value.split()[0]) * 1024
    except OSError:
        usage["rss"] = usage["peakRss"]
    return usage


def environment_facts() -> dict[str, Any]:
    return {
        "pythonVersion": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": sys.platform,
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
