"""The operator's Prometheus metrics, served on /metrics by ``health.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "workerfleet_operator"

RECONCILES = Counter(
    f"{PREFIX}_reconciles_total",
    "Reconciles by kind of object and result",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Time spent in one reconcile or status tick",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def record_reconcile(kind: str, result: str, seconds: float) -> None:
    """One reconcile (or status tick) of ``kind`` ended with ``result`` after ``seconds``."""
    RECONCILES.labels(kind=kind, result=result).inc()
    RECONCILE_SECONDS.labels(kind=kind).observe(seconds)


POOL_CONDITIONS = Gauge(
    f"{PREFIX}_pool_condition",
    "1 when the WorkerPool's condition has this status",
    ["namespace", "pool", "condition", "status"],
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_jobs",
    "Jobs of the pool's queue by state, as the last stats query saw them",
    ["namespace", "pool", "state"],
)
OLDEST_PENDING = Gauge(
    f"{PREFIX}_queue_oldest_pending_seconds",
    "Age of the oldest ready job of the pool's queue",
    ["namespace", "pool"],
)
DESIRED_REPLICAS = Gauge(
    f"{PREFIX}_pool_desired_replicas", "Replicas asked of the Deployment", ["namespace", "pool"]
)
READY_REPLICAS = Gauge(
    f"{PREFIX}_pool_ready_replicas", "Worker pods passing readiness", ["namespace", "pool"]
)
MAX_REPLICAS = Gauge(
    f"{PREFIX}_pool_max_replicas",
    "The pool's replicas.max: the most workers scaling may ask for",
    ["namespace", "pool"],
)
STATS_QUERIES = Counter(
    f"{PREFIX}_stats_queries_total",
    "Queue stats queries (one per database per round, whatever the number of pools)",
    ["result"],
)
STATS_ROUNDS = Counter(
    f"{PREFIX}_stats_rounds_total",
    "Stats rounds of the queue databases: each compares every pool's figures with the last "
    "round's and refreshes the pools whose figures changed",
)
STATS_DATABASES = Gauge(
    f"{PREFIX}_stats_databases", "Queue databases with a stats round running (pools attached)"
)
POOL_SYNCS = Counter(
    f"{PREFIX}_pool_syncs_total",
    "Syncs of WorkerPools by what asked for them: spec, notify (a NOTIFY on the queue), queue "
    "(the stats round saw the figures change), children (pods, Deployment or Service "
    "changed), due (the pool's time in the scheduler for what changes with time: poll "
    "interval while no stats round reads the queue, end of a scale-up period or of the "
    "scaleDownDelay window holding a scale-down, a held status write, an apply's retry, a pod's "
    "start-up grace), backstop (the backstop resync, nothing else being due sooner)",
    ["trigger"],
)
STATUS_WRITES = Counter(
    f"{PREFIX}_status_writes_total",
    "Status patches sent, by kind of object (nothing is sent when nothing changed)",
    ["kind"],
)
SCHEDULED_OBJECTS = Gauge(
    f"{PREFIX}_scheduled_objects",
    "WorkerPools and Monitors the operator's scheduler holds (deleted ones leave at once)",
    ["kind"],
)
APPLY_FAILURES = Counter(
    f"{PREFIX}_apply_failures_total",
    "Applies of a pool's children the API server refused or that failed, by kind; the same "
    "manifest is sent again only after a backoff",
    ["kind"],
)
DEPLOYMENT_APPLIES = Counter(
    f"{PREFIX}_deployment_applies_total", "Deployment applies by cause", ["cause"]
)
EVENTS = Counter(f"{PREFIX}_events_total", "Kubernetes Events posted", ["type", "reason"])
MONITOR_RECOVERED = Counter(
    f"{PREFIX}_monitor_recovered_total",
    "Recovery actions of Monitors",
    ["action"],
)
LEADER = Gauge(
    f"{PREFIX}_leader",
    "1 while this operator process acts (holds the leader lease, or runs without leader "
    "election), 0 while it stands by",
)
DEAD_WORKERS_RELEASED = Counter(
    f"{PREFIX}_dead_workers_released_total",
    "Worker incarnations found dead from their pods' status (container ended or restarted, "
    "pod gone) and marked dead at once",
)
DEAD_WORKER_JOBS = Counter(
    f"{PREFIX}_dead_worker_jobs_total",
    "Running jobs of those incarnations, released or dead-lettered (out of attempts)",
    ["outcome"],
)
# -- scaling --------------------------------------------------------------------------------------
SCALE_REACTION_SECONDS = Histogram(
    f"{PREFIX}_scale_reaction_seconds",
    "From the NOTIFY that made a pool grow to the Deployment patch that grew it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SCALE_CHANGES = Counter(
    f"{PREFIX}_scale_changes_total",
    "Changes of a pool's Deployment replicas by direction (up, down) and decision reason",
    ["direction", "reason"],
)
SCALING_EVALUATIONS = Counter(
    f"{PREFIX}_scaling_evaluations_total",
    "Scaling decisions made, by what triggered them (notify, poll, spec, queue)",
    ["trigger"],
)
DRAINS = Counter(
    f"{PREFIX}_drains_total",
    "Workers asked to drain before a scale-in, by outcome: started, completed (its pod "
    "went), timed_out (a bounded wait ran out; the drain was taken back), cancelled "
    "(no longer needed; taken back)",
    ["outcome"],
)
SCALE_IN_INTERRUPTED_JOBS = Counter(
    f"{PREFIX}_scale_in_interrupted_jobs_total",
    "Jobs running on a pod that a scale-in deleted without it being drained first (goal: 0)",
)
QUEUE_NOTIFICATIONS = Counter(
    f"{PREFIX}_queue_notifications_total", "NOTIFYs received on the queue databases' channel"
)
LISTEN_CONNECTIONS = Gauge(
    f"{PREFIX}_listen_connections", "Queue databases the operator is LISTENing on right now"
)

INCIDENTS_FIRING = Gauge(
    f"{PREFIX}_incidents_firing",
    "Incidents firing now, per Monitor, rule and WorkerPool (1 while firing)",
    ["namespace", "monitor", "rule", "pool"],
)
NOTIFICATIONS = Counter(
    f"{PREFIX}_notifications_total",
    "Webhook notifications by format and result (delivered, failed, dropped)",
    ["format", "result"],
)
NOTIFICATION_ATTEMPTS = Counter(
    f"{PREFIX}_notification_attempts_total",
    "Webhook delivery attempts by format and outcome (2xx ... 5xx, timeout, error)",
    ["format", "status_class"],
)
NOTIFICATION_DELIVERY_SECONDS = Histogram(
    f"{PREFIX}_notification_delivery_seconds",
    "Time from an incident's notification being queued to the webhook accepting it",
    ["format"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
LAST_ACTIVITY = Gauge(
    f"{PREFIX}_last_activity_timestamp_seconds",
    "Unix time of the last watch event or timer tick the operator handled",
)

CONDITION_STATUSES = ("True", "False", "Unknown")
# Series exported per pool, so a deleted pool's series can be removed.
_pool_series: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}


def _set(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
    gauge.labels(*labels).set(value)
    _pool_series.setdefault((labels[0], labels[1]), set()).add((gauge, labels))


def _drop(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
    _pool_series.get((labels[0], labels[1]), set()).discard((gauge, labels))


def record_pool(
    namespace: str, pool: str, status: Mapping[str, Any], max_replicas: int | None
) -> None:
    """Export one pool's status figures, and its replicas.max (None while its spec is invalid:
    a stale maximum would hold the at-maximum alert on a pool that no longer has one)."""
    for condition in status.get("conditions") or []:
        for value in CONDITION_STATUSES:
            labels = (namespace, pool, condition["type"], value)
            _set(POOL_CONDITIONS, labels, 1.0 if condition["status"] == value else 0.0)
    queue = status.get("queue")
    if isinstance(queue, Mapping):
        for state in ("pending", "scheduled", "running", "dead"):
            _set(QUEUE_DEPTH, (namespace, pool, state), float(queue.get(state, 0)))
        oldest = float(queue.get("oldestPendingSeconds") or 0)
        _set(OLDEST_PENDING, (namespace, pool), oldest)
    for gauge, key in ((DESIRED_REPLICAS, "desiredReplicas"), (READY_REPLICAS, "readyReplicas")):
        count = status.get(key)
        if isinstance(count, int):
            _set(gauge, (namespace, pool), float(count))
    if max_replicas is None:
        _drop(MAX_REPLICAS, (namespace, pool))
    else:
        _set(MAX_REPLICAS, (namespace, pool), float(max_replicas))


def forget_pool(namespace: str, pool: str) -> None:
    """Drop a deleted pool's series."""
    for gauge, labels in _pool_series.pop((namespace, pool), set()):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


# Firing series exported per Monitor, so resolved and deleted ones can be removed.
_firing_series: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}


def record_firing(namespace: str, monitor: str, firing: set[tuple[str, str]]) -> None:
    """The Monitor's firing incidents now, as (rule, pool) pairs; the others' series go."""
    now = {(namespace, monitor, rule, pool) for rule, pool in firing}
    for labels in _firing_series.get((namespace, monitor), set()) - now:
        with contextlib.suppress(KeyError):
            INCIDENTS_FIRING.remove(*labels)
    for labels in now:
        INCIDENTS_FIRING.labels(*labels).set(1.0)
    if now:
        _firing_series[(namespace, monitor)] = now
    else:
        _firing_series.pop((namespace, monitor), None)
