"""The WorkerPool status rollup: pods, Deployment, workers table and queue stats in, status out.

Pure: the handler gathers an :class:`Observation` and writes what comes back,
only when :attr:`Rollup.changed` says so, and posts :attr:`Rollup.events`
(one per condition transition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from workerfleet.durations import format_duration
from workerfleet.operator import builders, conditions, models, reasons, scaling_status
from workerfleet.operator.scaling_status import ScalingReport
from workerfleet.operator.views import DeploymentView, PodView
from workerfleet.worker.models import QueueStats, WorkerStats

# A pod younger than this that never restarted is starting, not failing.
STARTUP_GRACE_SECONDS = 120.0
NO_PENDING = "-"

EventType = Literal["Normal", "Warning"]
MANAGED_STATUS_FIELDS = tuple(
    field.alias or name for name, field in models.WorkerPoolStatus.model_fields.items()
)


@dataclass(frozen=True)
class QueueReading:
    """The pool's rows from the last stats query (None: nothing recorded yet)."""

    stats: QueueStats | None
    workers: WorkerStats | None


@dataclass(frozen=True)
class QueueProblem:
    """Why the queue could not be read; the message is safe to show (no DSN, no password).

    ``status`` is "Unknown" when the database answers but holds no queue yet
    (the workers create the schema when they start): not worth a warning.
    """

    reason: str
    message: str
    status: Literal["False", "Unknown"] = "False"

    @property
    def unreachable(self) -> bool:
        return self.status == "False"


@dataclass(frozen=True)
class Observation:
    name: str
    generation: int | None
    paused: bool
    spec_problem: str | None
    """Why the spec cannot work (naming the field), or None."""
    desired: int | None
    deployment: DeploymentView | None
    pods: Sequence[PodView]
    queue: QueueReading | QueueProblem | None
    """None: not checked (the spec is invalid)."""
    short_since: datetime | None
    """Since when fewer workers are ready than desired (see :func:`next_short_since`)."""
    previous: Mapping[str, Any]
    now: datetime
    apply_problem: str | None = None
    """Why the Deployment could not be applied (a transient API error), or None."""
    scaling: ScalingReport | None = None
    """The last scaling decision (None: the conditions it feeds are left as they were)."""
    last_scale_time: datetime | None = None
    """When the operator last changed the Deployment's replicas (None: not this process)."""
    schedules: list[dict[str, Any]] | Literal["unknown"] | None = "unknown"
    """status.schedules (None: the pool has none; "unknown": not read, keep the last)."""


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Rollup:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    changed: bool = False


def next_short_since(
    previous: datetime | None, ready: int, desired: int | None, now: datetime
) -> datetime | None:
    """Start, keep or clear the "fewer ready than desired" clock."""
    if desired is None or ready >= desired:
        return None
    return previous or now


def _starting(pod: PodView, now: datetime) -> bool:
    if pod.ready or pod.restarts > 0 or pod.phase == "Failed":
        return False
    if pod.created_at is None:
        return True
    return (now - pod.created_at).total_seconds() < STARTUP_GRACE_SECONDS


def _unhealthy(pods: Sequence[PodView], now: datetime) -> list[PodView]:
    return [p for p in pods if not p.ready and not _starting(p, now)]


def _queue_condition(queue: QueueReading | QueueProblem | None) -> conditions.ConditionUpdate:
    if isinstance(queue, QueueProblem):
        return conditions.ConditionUpdate(
            reasons.QUEUE_REACHABLE, queue.status, queue.reason, queue.message
        )
    if queue is None:
        return conditions.ConditionUpdate(
            reasons.QUEUE_REACHABLE, "Unknown", reasons.NOT_CHECKED, "the spec is not valid"
        )
    return conditions.ConditionUpdate(
        reasons.QUEUE_REACHABLE, "True", reasons.CONNECTED, "queue statistics read"
    )


def _available(ready: int, desired: int | None) -> conditions.ConditionUpdate:
    wanted = desired if desired is not None else 0
    if ready >= 1:
        return conditions.ConditionUpdate(
            reasons.AVAILABLE, "True", reasons.WORKERS_READY, f"{ready} of {wanted} workers ready"
        )
    if wanted == 0:
        return conditions.ConditionUpdate(
            reasons.AVAILABLE, "True", reasons.SCALED_TO_ZERO, "no workers wanted"
        )
    return conditions.ConditionUpdate(
        reasons.AVAILABLE, "False", reasons.NO_READY_WORKERS, f"0 of {wanted} workers ready"
    )


def _degraded(obs: Observation, live: Sequence[PodView], ready: int) -> conditions.ConditionUpdate:
    def degraded(reason: str, message: str) -> conditions.ConditionUpdate:
        return conditions.ConditionUpdate(reasons.DEGRADED, "True", reason, message)

    if obs.spec_problem is not None:
        return degraded(reasons.INVALID_SPEC, obs.spec_problem)
    if isinstance(obs.queue, QueueProblem) and obs.queue.unreachable:
        return degraded(reasons.QUEUE_UNREACHABLE, obs.queue.message)
    if obs.apply_problem is not None:
        return degraded(reasons.APPLY_FAILED, obs.apply_problem)
    if obs.deployment is None and not obs.paused:
        return degraded(reasons.DEPLOYMENT_MISSING, f"Deployment {obs.name} does not exist")
    failing = _unhealthy(live, obs.now)
    if failing:
        names = ", ".join(
            f"{p.name} ({p.phase.lower()}, {p.restarts} restarts)" for p in failing[:3]
        )
        more = f" and {len(failing) - 3} more" if len(failing) > 3 else ""
        return degraded(reasons.WORKERS_NOT_READY, f"workers not ready: {names}{more}")
    wanted = obs.desired or 0
    if ready < wanted:
        waited = (obs.now - obs.short_since).total_seconds() if obs.short_since else 0.0
        message = f"{ready} of {wanted} workers ready"
        if waited >= STARTUP_GRACE_SECONDS:
            return degraded(reasons.WORKERS_NOT_READY, f"{message} for {format_duration(waited)}")
        return conditions.ConditionUpdate(
            reasons.DEGRADED, "False", reasons.WORKERS_STARTING, message
        )
    return conditions.ConditionUpdate(
        reasons.DEGRADED, "False", reasons.AS_EXPECTED, "all wanted workers are ready"
    )


def _paused(paused: bool) -> conditions.ConditionUpdate:
    if paused:
        return conditions.ConditionUpdate(
            reasons.PAUSED, "True", reasons.PAUSED_BY_SPEC, "spec.paused is true: left alone"
        )
    return conditions.ConditionUpdate(reasons.PAUSED, "False", reasons.ACTIVE, "reconciled")


def _health(obs: Observation, by_type: Mapping[str, Mapping[str, Any]], ready: int) -> str:
    if obs.paused:
        return reasons.HEALTH_PAUSED
    if obs.spec_problem is not None:
        return reasons.HEALTH_INVALID_SPEC
    if by_type[reasons.QUEUE_REACHABLE]["status"] == "False":
        return reasons.HEALTH_QUEUE_UNREACHABLE
    available = by_type[reasons.AVAILABLE]
    degraded = by_type[reasons.DEGRADED]
    if available["status"] == "False":
        starting = degraded["reason"] == reasons.WORKERS_STARTING
        return reasons.HEALTH_STARTING if starting else reasons.HEALTH_UNAVAILABLE
    if degraded["status"] == "True":
        return reasons.HEALTH_DEGRADED
    if available["reason"] == reasons.SCALED_TO_ZERO and ready == 0:
        return reasons.HEALTH_SCALED_TO_ZERO
    return reasons.HEALTH_HEALTHY


def queue_status(stats: QueueStats | None) -> dict[str, Any]:
    if stats is None:
        return models.QueueStatus(oldest_pending=NO_PENDING).model_dump(
            by_alias=True, exclude_none=True
        )
    oldest = stats.oldest_pending_seconds
    return models.QueueStatus(
        pending=stats.pending,
        scheduled=stats.scheduled,
        running=stats.running,
        succeeded=stats.succeeded,
        dead=stats.dead,
        cancelled=stats.cancelled,
        oldest_pending_seconds=None if oldest is None else int(oldest),
        oldest_pending=NO_PENDING if oldest is None else format_duration(int(oldest)),
        throughput_per_minute=stats.finished_last_minute,
    ).model_dump(by_alias=True, exclude_none=True)


def worker_counts(stats: WorkerStats | None) -> dict[str, Any]:
    if stats is None:
        return models.WorkerCounts().model_dump(by_alias=True)
    return models.WorkerCounts(
        online=stats.online,
        busy=stats.busy,
        idle=stats.idle,
        draining=stats.draining,
        dead=stats.dead,
    ).model_dump(by_alias=True)


def status_patch(previous: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch from ``previous`` to ``status``: what is gone is set to None."""
    patch: dict[str, Any] = {}
    for key in MANAGED_STATUS_FIELDS:
        old, new = previous.get(key), status.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            nested = _nested_patch(old, new)
            if nested:
                patch[key] = nested
        elif new is None and old is not None:
            patch[key] = None
        elif new is not None and new != old:
            patch[key] = new
    return patch


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` after a JSON merge patch (RFC 7386): None removes, mappings merge."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            before = result.get(key)
            result[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            result[key] = value
    return result


def _nested_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


def rollup(obs: Observation) -> Rollup:
    live = [p for p in obs.pods if not p.deleting]
    ready = sum(1 for p in live if p.ready)
    previous = obs.previous
    updates = [
        _available(ready, obs.desired),
        _degraded(obs, live, ready),
        _queue_condition(obs.queue),
        _paused(obs.paused),
    ]
    if obs.scaling is not None:
        updates += scaling_status.condition_updates(obs.scaling)
    merged = conditions.merge_conditions(
        previous.get("conditions"), updates, generation=obs.generation, now=obs.now
    )
    by_type = conditions.by_type(merged)
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "replicas": len(live),
        "readyReplicas": ready,
        "desiredReplicas": obs.desired,
        "selector": builders.selector_string(obs.name),
        "health": _health(obs, by_type, ready),
        "deployment": obs.deployment.name if obs.deployment else None,
        "conditions": merged,
    }
    if isinstance(obs.queue, QueueReading):
        status["queue"] = queue_status(obs.queue.stats)
        status["workers"] = worker_counts(obs.queue.workers)
    else:  # the last figures stay; QueueReachable=False says they are stale
        status["queue"] = previous.get("queue")
        status["workers"] = previous.get("workers")
    if obs.scaling is not None:
        status["scaling"] = scaling_status.status_block(obs.scaling)
    scaled = previous.get("desiredReplicas") not in (None, obs.desired) and obs.desired is not None
    if obs.last_scale_time is not None:
        status["lastScaleTime"] = conditions.rfc3339(obs.last_scale_time)
    else:
        status["lastScaleTime"] = (
            conditions.rfc3339(obs.now) if scaled else previous.get("lastScaleTime")
        )
    status["schedules"] = previous.get("schedules") if obs.schedules == "unknown" else obs.schedules
    status = {k: v for k, v in status.items() if v is not None}
    changed = any(previous.get(key) != value for key, value in status.items()) or (
        "schedules" not in status and previous.get("schedules") is not None
    )
    events = events_for(conditions.transitions(previous.get("conditions"), merged))
    return Rollup(status=status, events=events, changed=changed)


def events_for(changes: Sequence[conditions.Transition]) -> list[Event]:
    """Kubernetes Events for condition transitions worth telling a person about."""
    events = []
    queue_changed = any(c.type == reasons.QUEUE_REACHABLE for c in changes)
    for change in changes:
        first = change.before is None
        if (
            change.type == reasons.DEGRADED
            and queue_changed
            and (change.reason == reasons.QUEUE_UNREACHABLE or change.after == "False")
        ):
            continue  # the QueueReachable event tells the same story
        if change.type == reasons.AVAILABLE and not first:
            if change.after == "True":
                events.append(Event("Normal", reasons.EVENT_AVAILABLE, change.message))
            elif change.after == "False":
                events.append(Event("Warning", reasons.EVENT_UNAVAILABLE, change.message))
        elif change.type == reasons.DEGRADED:
            if change.after == "True":
                events.append(Event("Warning", reasons.EVENT_DEGRADED, change.message))
            elif not first:
                events.append(Event("Normal", reasons.EVENT_RECOVERED, change.message))
        elif change.type == reasons.QUEUE_REACHABLE:
            if change.after == "False":
                events.append(Event("Warning", reasons.EVENT_QUEUE_UNREACHABLE, change.message))
            elif change.after == "True" and change.before == "False":
                events.append(Event("Normal", reasons.EVENT_QUEUE_REACHABLE, change.message))
        elif change.type == reasons.PAUSED and (change.after == "True" or not first):
            reason = reasons.EVENT_PAUSED if change.after == "True" else reasons.EVENT_RESUMED
            events.append(Event("Normal", reason, change.message))
    return events
