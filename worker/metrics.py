"""Prometheus metrics of one worker process, in a registry of its own.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units) and
the labels are the ones people filter on: queue and task. Worker id is left out
of labels on purpose: it changes on every start and would explode cardinality;
the pod label added by the scrape carries it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

PREFIX = "workerfleet_worker"
JOB_DURATION_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
QUEUE_WAIT_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip
CLAIM_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
JOB_LABELS = ("queue", "task")
OUTCOMES = ("started", "succeeded", "failed", "retried", "dead", "fenced", "released")


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        r = self.registry
        self.jobs = {
            outcome: Counter(
                f"{PREFIX}_jobs_{outcome}",
                _OUTCOME_HELP[outcome],
                JOB_LABELS,
                registry=r,
            )
            for outcome in OUTCOMES
        }
        self.job_duration = Histogram(
            f"{PREFIX}_job_duration_seconds",
            "Time from a job's start on this worker to its end, by outcome",
            (*JOB_LABELS, "outcome"),
            buckets=JOB_DURATION_BUCKETS_SECONDS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_job_queue_wait_seconds",
            "Time from when a job became runnable (enqueue or run_at) to its start",
            JOB_LABELS,
            buckets=QUEUE_WAIT_BUCKETS_SECONDS,
            registry=r,
        )
        self.claim_duration = Histogram(
            f"{PREFIX}_claim_duration_seconds",
            "Latency of one claim query (a batch of up to the free slots)",
            buckets=CLAIM_BUCKETS_SECONDS,
            registry=r,
        )
        self.claimed = Counter(
            f"{PREFIX}_jobs_claimed", "Jobs handed to this worker by claims", ["queue"], registry=r
        )
        self.notifications = Counter(
            f"{PREFIX}_notifications", "NOTIFY wake-ups received for this worker's queues",
            registry=r,
        )  # fmt: skip
        self.database_errors = Counter(
            f"{PREFIX}_database_errors",
            "Database calls that failed (unreachable, conflicts, other errors), by operation",
            ["operation"],
            registry=r,
        )
        self.database_conflicts = Counter(
            f"{PREFIX}_database_conflicts",
            "Database calls the server rolled back to break a deadlock or serialization "
            "conflict (retried at once), by operation",
            ["operation"],
            registry=r,
        )
        self.fallback_rescued = Counter(
            f"{PREFIX}_fallback_rescued_jobs",
            "Jobs with an expired lease that this worker's fallback rescue handed back, "
            "by outcome (pending again, or dead when out of attempts)",
            ["outcome"],
            registry=r,
        )
        self.current_jobs = Gauge(
            f"{PREFIX}_current_jobs", "Jobs running on this worker now", registry=r
        )
        self.concurrency = Gauge(
            f"{PREFIX}_concurrency", "Maximum jobs this worker runs at once", registry=r
        )
        self.heartbeat_age = Gauge(
            f"{PREFIX}_heartbeat_age_seconds",
            "Seconds since the last successful heartbeat (since start if none yet)",
            registry=r,
        )
        self.database_up = Gauge(
            f"{PREFIX}_database_up", "1 if the last database call succeeded", registry=r
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 if /readyz answers 200", registry=r)
        self.draining = Gauge(
            f"{PREFIX}_draining",
            "1 while claiming nothing: shutdown began, or the operator asked for a drain",
            registry=r,
        )
        self.info = Info(f"{PREFIX}", "Identity of this worker process", registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def bind_heartbeat_age(self, seconds_since_heartbeat: Callable[[], float]) -> None:
        self.heartbeat_age.set_function(seconds_since_heartbeat)

    def count(self, outcome: str, queue: str, task: str) -> None:
        self._child(self.jobs[outcome], queue, task).inc()

    def observe_duration(self, queue: str, task: str, outcome: str, seconds: float) -> None:
        self._child(self.job_duration, queue, task, outcome).observe(seconds)

    def count_claimed(self, queue: str, jobs: int) -> None:
        self._child(self.claimed, queue).inc(jobs)

    def observe_queue_wait(self, queue: str, task: str, seconds: float) -> None:
        self._child(self.queue_wait, queue, task).observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() validates and sorts on every call; at thousands of jobs a second
        # that shows up in profiles, so the children are looked up once.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def monotonic_since(moment: Callable[[], float | None], start: float) -> Callable[[], float]:
    """A callable for gauges: seconds since ``moment()`` (or since ``start`` if None)."""

    def age() -> float:
        last = moment()
        return time.monotonic() - (last if last is not None else start)

    return age


_OUTCOME_HELP = {
    "started": "Jobs started on this worker",
    "succeeded": "Jobs that succeeded and whose completion was recorded",
    "failed": "Job attempts that failed (raised, timed out, exited non-zero)",
    "retried": "Failed attempts put back to pending with a backoff delay",
    "dead": "Jobs dead-lettered (out of attempts, unknown task or permanent error)",
    "fenced": "Outcomes dropped because the job had been taken away from this worker",
    "released": "Jobs handed back to pending at shutdown without counting the attempt",
}
