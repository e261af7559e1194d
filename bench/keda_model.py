"""KEDA with its defaults, computed from its documented algorithm (no KEDA runs here).

What the model follows, as KEDA and the HPA document it:
- KEDA's operator reads the queue every ``pollingInterval`` (30 s). At 0 replicas it
  activates the Deployment (0 -> 1) once the metric exceeds the activation threshold;
  it deactivates it (-> 0) once the metric has been inactive for ``cooldownPeriod``
  (300 s) since the last poll that saw it active.
- Between 1 and max, the HPA decides, every ``--horizontal-pod-autoscaler-sync-period``
  (15 s): desired = ceil(metric / target) for an AverageValue target (KEDA's default
  metric type), within [1, max], unchanged within the 10 % tolerance.
- The HPA's default behaviour: scale-up may add max(4 pods, 100 %) per 15 s (counted
  from the replicas at the start of the period), with no stabilization; scale-down
  follows the highest recommendation of the last 300 s (stabilization window), then may
  remove 100 % per 15 s.
- Pods become Ready ``pod_start_seconds`` after they are asked for (measured on this
  node by the workerfleet run, so both columns pay the same start time).
- The queue is a fluid: each Ready worker runs ``concurrency`` jobs of ``job_seconds``.

The phases of KEDA's poll and of the HPA's sync relative to the enqueue are unknown in
practice, so :func:`computed` runs the model over a grid of both and reports the mean,
the best and the worst case.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

STEP_SECONDS = 0.1
PHASE_GRID_SECONDS = 3.0
TOLERANCE = 0.1


@dataclass(frozen=True)
class KedaDefaults:
    polling_interval: float = 30.0
    hpa_sync_period: float = 15.0
    scale_up_pods: int = 4
    scale_up_percent: int = 100
    scale_up_period: float = 15.0
    scale_down_window: float = 300.0
    cooldown_period: float = 300.0
    activation_threshold: float = 0.0


@dataclass(frozen=True)
class Workload:
    arrivals: Sequence[tuple[float, int]]
    """(seconds after the start, jobs enqueued then)."""
    job_seconds: float
    concurrency: int
    jobs_per_worker: int
    max_replicas: int
    pod_start_seconds: float


@dataclass
class Timeline:
    peak: int = 0
    to_peak: float | None = None
    to_peak_ready: float | None = None
    to_empty: float | None = None
    to_min: float | None = None
    _ready_at: list[float] = field(default_factory=list)


@dataclass
class _Hpa:
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)

    def decide(
        self, now: float, current: int, metric: float, work: Workload, keda: KedaDefaults
    ) -> int:
        raw = math.ceil(metric / work.jobs_per_worker)
        ratio = metric / (work.jobs_per_worker * current)
        if abs(ratio - 1.0) <= TOLERANCE:
            raw = current
        raw = min(max(raw, 1), work.max_replicas)
        self.recommendations = [
            (at, value) for at, value in self.recommendations if at > now - keda.scale_down_window
        ] + [(now, raw)]
        if raw > current:
            self.scale_ups = [
                (at, n) for at, n in self.scale_ups if at > now - keda.scale_up_period
            ]
            start = current - sum(n for _, n in self.scale_ups)
            limit = max(
                start + keda.scale_up_pods, math.ceil(start * (1 + keda.scale_up_percent / 100))
            )
            new = min(raw, limit)
            if new > current:
                self.scale_ups.append((now, new - current))
            return new
        if raw < current:
            return min(current, max(value for _, value in self.recommendations))
        return current


def simulate(work: Workload, keda: KedaDefaults, poll_phase: float, sync_phase: float) -> Timeline:
    """One run of the model, KEDA's first poll at ``poll_phase`` and the HPA's first sync at
    ``sync_phase`` seconds after the start."""
    timeline = Timeline()
    arrivals = sorted(work.arrivals)
    last_arrival = arrivals[-1][0] if arrivals else 0.0
    queue = 0.0
    replicas = 0
    ready_at: list[float] = []  # when each of the current replicas is (or was) Ready
    hpa = _Hpa()
    next_poll, next_sync = poll_phase, sync_phase
    last_active = -math.inf
    t, index = 0.0, 0
    horizon = last_arrival + keda.cooldown_period + keda.scale_down_window + 600.0
    while t < horizon:
        while index < len(arrivals) and arrivals[index][0] <= t:
            queue += arrivals[index][1]
            index += 1
        ready = sum(1 for at in ready_at if at <= t)
        in_flight = min(queue, ready * work.concurrency)
        queue = max(queue - in_flight * STEP_SECONDS / work.job_seconds, 0.0)
        if queue < 0.5 and index == len(arrivals):
            queue = 0.0
            if timeline.to_empty is None:
                timeline.to_empty = t
        wanted = replicas
        if t >= next_poll:
            next_poll += keda.polling_interval
            if queue > keda.activation_threshold:
                last_active = t
                wanted = max(replicas, 1)
            elif replicas > 0 and t - last_active >= keda.cooldown_period:
                wanted = 0
        if t >= next_sync:
            next_sync += keda.hpa_sync_period
            if replicas > 0 and wanted > 0:
                wanted = hpa.decide(t, replicas, queue, work, keda)
        if wanted > replicas:
            ready_at += [t + work.pod_start_seconds] * (wanted - replicas)
        elif wanted < replicas:
            ready_at = sorted(ready_at)[:wanted]
        replicas = wanted
        if replicas > timeline.peak:
            timeline.peak, timeline.to_peak, timeline.to_peak_ready = replicas, t, None
        if (
            timeline.to_peak_ready is None
            and replicas == timeline.peak
            and timeline.peak > 0
            and sum(1 for at in ready_at if at <= t) == timeline.peak
        ):
            timeline.to_peak_ready = t
        if timeline.to_empty is not None and replicas == 0 and timeline.to_min is None:
            timeline.to_min = t
            break
        t += STEP_SECONDS
    return timeline


@dataclass(frozen=True)
class Figure:
    mean: float | None
    best: float | None
    worst: float | None

    def text(self) -> str:
        if self.mean is None or self.best is None or self.worst is None:
            return "never"
        return f"{self.mean:.1f} s ({self.best:.0f}-{self.worst:.0f})"


@dataclass(frozen=True)
class Computed:
    peak: int
    to_peak: Figure
    to_peak_ready: Figure
    to_empty: Figure
    to_min: Figure


def computed(work: Workload, keda: KedaDefaults | None = None) -> Computed:
    """The model over a grid of poll and sync phases: mean (best-worst) per figure."""
    keda = keda or KedaDefaults()
    runs = [
        simulate(work, keda, poll, sync)
        for poll in _grid(keda.polling_interval)
        for sync in _grid(keda.hpa_sync_period)
    ]

    def figure(values: list[float | None]) -> Figure:
        known = [v for v in values if v is not None]
        if len(known) < len(values) or not known:
            return Figure(None, None, None)
        return Figure(statistics.fmean(known), min(known), max(known))

    return Computed(
        peak=max(run.peak for run in runs),
        to_peak=figure([run.to_peak for run in runs]),
        to_peak_ready=figure([run.to_peak_ready for run in runs]),
        to_empty=figure([run.to_empty for run in runs]),
        to_min=figure([run.to_min for run in runs]),
    )


def _grid(period: float) -> list[float]:
    return [i * PHASE_GRID_SECONDS for i in range(int(period / PHASE_GRID_SECONDS))]
