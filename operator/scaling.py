"""The scaling policy: how many workers a pool should run, as one pure function.

    wanted = ceil((ready pending + running) / jobsPerWorker), clamped to [min, max]

Scheduled jobs (run_at in the future) are not in "ready pending" until they are
due. Then, in this order (each rule has its row in tests/unit/operator/test_scaling.py):

- ``replicas.override`` (``kubectl scale``) pins the count.
- The queue cannot be read: hold ``max(current, fallbackReplicas, min)``, never lower.
- At zero, wake only when ready pending >= ``activationJobs``. Never to zero while a
  job of the queue runs (the ceiling above is at least 1 then).
- Never below the workers holding a job right now (from the workers table): a pool
  shrinks only by idle workers.
- Up: by at most ``maxScaleUpStep`` per SCALE_UP_PERIOD_SECONDS, counted from the
  replicas at the start of the period. The period is the HPA's 15 s: evaluations run
  on every NOTIFY (several a second in a burst), so a step per evaluation would limit
  nothing. ``min`` is reached at once whatever the step.
- Down: only to the highest recommendation of the last ``scaleDownDelay`` (the
  HPA's stabilization window), kept in memory. The window of an operator that just
  started holds the current count, so a restart never scales down at once.

No clock, no I/O: time comes in as ``now`` (monotonic seconds) and the history goes
in and comes back out with the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from workerfleet.durations import format_duration
from workerfleet.operator import models, reasons
from workerfleet.worker.models import QueueStats, WorkerStats

SCALE_UP_PERIOD_SECONDS = 15.0


@dataclass(frozen=True)
class History:
    """What the policy remembers about one pool between evaluations.

    ``recommendations`` is the envelope of the scale-down window: (at, replicas)
    in time order with strictly decreasing replicas, so its first entry is the
    highest recommendation still in the window and it never holds more entries
    than there are distinct replica counts.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_ups: tuple[tuple[float, int], ...] = ()
    """(at, replicas added) in the current scale-up period."""
    started: bool = False
    """False until the first evaluation put the current count into the window."""


@dataclass(frozen=True)
class ScalingInputs:
    spec: models.WorkerPoolSpec
    current: int | None
    """The Deployment's spec.replicas now (None: no Deployment yet)."""
    queue: QueueStats | None
    """The pool's queue (None: it could not be read)."""
    workers: WorkerStats | None
    """The pool's workers (None: the queue could not be read)."""
    history: History
    now: float


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    """Why this count: a ``reasons.SCALE_*`` constant (or ``REPLICAS_*``)."""
    message: str
    """The same in words, with the figures ("8 -> 20: 190 ready pending + ...")."""
    recommended: int
    """What the queue alone asks for, before bounds, floors, steps and delays."""
    limit: str | None
    """What bound the recommendation (``reasons.LIMIT_*``), for ScalingLimited."""
    active: bool
    """Whether the queue drove the decision (ScalingActive)."""
    history: History
    reconsider_at: float | None = None
    """When the same inputs may decide otherwise: a scale-up step's period ends, or the
    recommendation that holds a scale-down back leaves the scaleDownDelay window."""


def decide(inputs: ScalingInputs) -> Decision:
    spec = inputs.spec
    current = inputs.current or 0
    history = _started(inputs.history, current, inputs.now)
    if spec.replicas.override is not None:
        return _pinned(inputs, spec.replicas.override, history)
    if inputs.queue is None or inputs.workers is None:
        return _fallback(inputs, history)
    return _from_queue(inputs, inputs.queue, inputs.workers, history)


# -- the rules ----------------------------------------------------------------------------------


def _pinned(inputs: ScalingInputs, override: int, history: History) -> Decision:
    history = _recommend(history, inputs.now, override, inputs.spec)
    return Decision(
        replicas=override,
        reason=reasons.REPLICAS_OVERRIDE,
        message=f"{_arrow(inputs.current, override)}: pinned by spec.replicas.override "
        "(kubectl scale); remove it to scale from the queue again",
        recommended=override,
        limit=None,
        active=False,
        history=history,
    )


def _fallback(inputs: ScalingInputs, history: History) -> Decision:
    spec = inputs.spec
    held = max(inputs.current or 0, spec.scaling.fallback_replicas, spec.replicas.min)
    history = _recommend(history, inputs.now, held, spec)
    return Decision(
        replicas=held,
        reason=reasons.SCALE_FALLBACK,
        message=f"{_arrow(inputs.current, held)}: the queue cannot be read; holding "
        f"max(current, fallbackReplicas {spec.scaling.fallback_replicas}, "
        f"min {spec.replicas.min}) until it can",
        recommended=held,
        limit=None,
        active=False,
        history=history,
    )


def _from_queue(
    inputs: ScalingInputs, queue: QueueStats, workers: WorkerStats, history: History
) -> Decision:
    spec, now = inputs.spec, inputs.now
    scaling, bounds = spec.scaling, spec.replicas
    current = inputs.current or 0
    depth = queue.pending + queue.running
    recommended = math.ceil(depth / scaling.jobs_per_worker)
    words = _depth_words(queue, scaling.jobs_per_worker)
    reason, limit = reasons.SCALE_QUEUE_DEPTH, None
    if current == 0 and queue.pending < scaling.activation_jobs:
        recommended = 0
        words = f"{queue.pending} ready pending, below activationJobs {scaling.activation_jobs}"
        reason = reasons.SCALE_BELOW_ACTIVATION
    target = min(max(recommended, bounds.min), bounds.max)
    if target > recommended:
        reason, limit = reasons.REPLICAS_MINIMUM, reasons.LIMIT_TOO_FEW
        words += f", raised to min {bounds.min}"
    elif target < recommended:
        reason, limit = reasons.SCALE_MAXIMUM, reasons.LIMIT_TOO_MANY
        words += f", capped by max {bounds.max}"
    floor = min(workers.holding, current)
    if target < floor:
        target = floor
        reason, limit = reasons.SCALE_BUSY_WORKERS, reasons.LIMIT_BUSY_WORKERS
        words += f", held by {floor} workers holding a job"
    history = _recommend(history, now, target, spec)
    if target > current:
        return _scale_up(inputs, target, recommended, reason, limit, words, history)
    if target < current:
        return _scale_down(inputs, target, recommended, reason, limit, words, history)
    return Decision(
        current, reason, f"holding {current}: {words}", recommended, limit, True, history
    )


def _scale_up(
    inputs: ScalingInputs,
    target: int,
    recommended: int,
    reason: str,
    limit: str | None,
    words: str,
    history: History,
) -> Decision:
    spec, now = inputs.spec, inputs.now
    current = inputs.current or 0
    recent = tuple(
        (at, added) for at, added in history.scale_ups if at > now - SCALE_UP_PERIOD_SECONDS
    )
    period_start = max(current - sum(added for _, added in recent), 0)
    ceiling = period_start + step_size(spec.scaling.max_scale_up_step, period_start)
    replicas = max(min(target, ceiling), spec.replicas.min, current)
    if replicas < target:
        reason, limit = reasons.SCALE_UP_LIMITED, reasons.LIMIT_SCALE_UP
        words += (
            f", limited by maxScaleUpStep {spec.scaling.max_scale_up_step} per "
            f"{format_duration(SCALE_UP_PERIOD_SECONDS)} (from {period_start})"
        )
    if replicas > current:
        recent += ((now, replicas - current),)
    history = replace(history, scale_ups=recent)
    message = f"{_arrow(inputs.current, replicas)}: {words}"
    reconsider_at = None
    if limit == reasons.LIMIT_SCALE_UP and recent:
        reconsider_at = recent[0][0] + SCALE_UP_PERIOD_SECONDS
    return Decision(replicas, reason, message, recommended, limit, True, history, reconsider_at)


def _scale_down(
    inputs: ScalingInputs,
    target: int,
    recommended: int,
    reason: str,
    limit: str | None,
    words: str,
    history: History,
) -> Decision:
    current = inputs.current or 0
    first = history.recommendations[0] if history.recommendations else (inputs.now, target)
    highest = first[1]
    # Only time lets a held scale-down go further: the highest entry leaving the window,
    # the first instant after at + delay (``_recommend`` keeps it at that instant).
    window_ends = math.nextafter(first[0] + inputs.spec.scaling.scale_down_delay_seconds, math.inf)
    if highest >= current:
        delay = inputs.spec.scaling.scale_down_delay
        message = (
            f"holding {current}: {words} wants {target}; a recommendation of {highest} in the "
            f"last {delay} (scaleDownDelay) keeps it"
        )
        return Decision(
            current,
            reasons.SCALE_DOWN_DELAYED,
            message,
            recommended,
            limit,
            True,
            history,
            window_ends,
        )
    replicas = max(highest, target)
    reconsider_at = None
    if replicas > target:
        reason, reconsider_at = reasons.SCALE_DOWN_DELAYED, window_ends
        words += f"; {replicas} was recommended within the last scaleDownDelay"
    message = f"{_arrow(inputs.current, replicas)}: {words}"
    return Decision(replicas, reason, message, recommended, limit, True, history, reconsider_at)


# -- pieces -------------------------------------------------------------------------------------


def step_size(step: int | str, base: int) -> int:
    """Workers one scale-up period may add from ``base``: a number, or a percentage of
    ``base`` rounded up; at least 1."""
    if isinstance(step, int):
        return max(step, 1)
    percent = int(step.rstrip("%"))
    return max(math.ceil(base * percent / 100), 1)


def _started(history: History, current: int, now: float) -> History:
    """A fresh window holds the current count, so a new operator never scales down at once."""
    if history.started:
        return history
    return History(recommendations=((now, current),), scale_ups=(), started=True)


def _recommend(history: History, now: float, replicas: int, spec: models.WorkerPoolSpec) -> History:
    """The window with ``replicas`` recommended at ``now``; entries older than the delay go.

    An older entry no higher than the new one can never be the window's highest
    again (the new one outlives it), so it is dropped: the envelope stays short.
    """
    delay = spec.scaling.scale_down_delay_seconds
    kept = tuple(
        (at, value)
        for at, value in history.recommendations
        if value > replicas and at >= now - delay
    )
    return replace(history, recommendations=(*kept, (now, replicas)))


def _depth_words(queue: QueueStats, jobs_per_worker: int) -> str:
    return (
        f"{queue.pending} ready pending + {queue.running} running at {jobs_per_worker} per worker"
    )


def _arrow(current: int | None, replicas: int) -> str:
    if current is None:
        return f"create with {replicas}"
    if current == replicas:
        return f"holding {replicas}"
    return f"{current} -> {replicas}"


def idle_slots_warning(spec: models.WorkerPoolSpec) -> str | None:
    """Why jobsPerWorker below worker.concurrency leaves slots idle by construction."""
    per_worker, slots = spec.scaling.jobs_per_worker, spec.worker.concurrency
    if per_worker >= slots:
        return None
    return (
        f"scaling.jobsPerWorker ({per_worker}) is below worker.concurrency ({slots}): the pool "
        f"runs one worker per {per_worker} jobs, so {slots - per_worker} of each worker's "
        f"{slots} slots stay idle by construction; set jobsPerWorker to at least {slots}"
    )
