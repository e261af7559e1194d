"""One measured run of one system on one scenario: a cell column of the table.

Figures come from the watched Deployment and pods (scale_watch), the moments the driver
recorded (scale_scenarios), the run ledger (every run of every job), and the node
agent's log (SIGKILLs after a pod's grace period). Seconds are from the first enqueue's
commit (t0) unless a figure says otherwise.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scale_scenarios import Moments
from scale_systems import MAX_REPLICAS
from scale_watch import Watched

# The node agent's line when a process outlived its grace period (process_groups.py).
SIGKILL_LOG_MARKER = "grace: SIGKILL"


@dataclass
class Run:
    scenario: str
    system: str
    error: str | None = None
    peak: int = 0
    to_first_change: float | None = None
    to_peak: float | None = None
    to_peak_ready: float | None = None
    to_empty: float | None = None
    to_min: float | None = None
    pod_seconds: float | None = None
    pod_start_median: float | None = None
    extra_runs: int = 0
    rerun_jobs: int = 0
    cut_off_runs: int = 0
    sigkills: int = 0
    restarts: int = 0
    # scale-in: spec.replicas while every worker held jobs
    replicas_at_trickle_end: int | None = None
    lowest_under_load: int | None = None
    # outage
    outage: dict[str, Any] = field(default_factory=dict)
    system_figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class LogCounter:
    """Counts lines with a marker appended to a log file since construction."""

    def __init__(self, path: Path, marker: str) -> None:
        self.path = path
        self.marker = marker
        self.offset = path.stat().st_size if path.exists() else 0

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").count(self.marker)


def measure(run: Run, watched: Watched, moments: Moments) -> None:
    t0 = moments.t0
    run.notes += moments.notes
    after = [(at, n) for at, n in watched.replicas if at >= t0]
    if moments.empty is not None:
        run.to_empty = moments.empty - t0
    if moments.at_min is not None:
        run.to_min = moments.at_min - t0
    end = moments.at_min or (watched.replicas[-1][0] if watched.replicas else t0)
    run.pod_seconds = watched.pod_seconds(t0, end)
    starts = watched.first_ready_times()
    run.pod_start_median = statistics.median(starts) if starts else None
    run.restarts = watched.restarts()
    if after:
        run.to_first_change = after[0][0] - t0
        run.peak = max(n for _, n in after)
        peak_at = next(at for at, n in after if n == run.peak)
        run.to_peak = peak_at - t0
        moments_after = sorted(
            {peak_at}
            | {
                at
                for pod in watched.pods.values()
                for at, ready in pod.readiness
                if ready and at >= peak_at
            }
        )
        ready_at = next((at for at in moments_after if watched.ready_at(at) >= run.peak), None)
        run.to_peak_ready = None if ready_at is None else ready_at - t0
    if run.scenario == "scale-in":
        _under_load(run, watched, moments)
    if run.scenario == "outage":
        _outage(run, watched, moments)


def _under_load(run: Run, watched: Watched, moments: Moments) -> None:
    end = moments.enqueued_until
    run.replicas_at_trickle_end = watched.replicas_at(end)
    if run.to_peak is not None:
        run.lowest_under_load = min(watched.replicas_between(moments.t0 + run.to_peak, end))


def _outage(run: Run, watched: Watched, moments: Moments) -> None:
    start, end = moments.outage_start, moments.outage_end
    if start is None or end is None:
        return
    replicas = watched.replicas_between(start, end)
    ready = watched.ready_between(start, end)
    run.outage = {
        "full_after": None if moments.full is None else moments.full - moments.t0,
        "replicas_before": watched.replicas_at(start),
        "ready_before": watched.ready_at(start),
        "replicas_during": [min(replicas), max(replicas)],
        "ready_lowest_during": min(ready),
        "replicas_after_30s": watched.replicas_at(end + 30.0),
        "all_ready_after": None if moments.recovered is None else moments.recovered - end,
        "to_empty_after": None if moments.empty is None else moments.empty - end,
        "said_during": moments.said_during_outage,
        "max_replicas": MAX_REPLICAS,
    }
