"""One sync of one WorkerPool, as a chain of named steps.

    parse -> read queue -> decide replicas -> shrink safely -> apply children
          -> record the scale -> read schedules -> observe -> report -> next due

Each step is a small function of what the steps before it produced, in the
style of CloudNativePG's reconciler: the decisions (``validation``,
``scaling.decide``, ``scale_in.plan``, ``rollup``) are pure and unit-tested, the
steps only move data between them and the cluster. kopf's spec handlers
(``handlers.py``) and, outside kopf, everything that pokes the pool's trigger
(``triggers.py``: a NOTIFY, a change of its figures in the database's stats
round, a change of its pods or Deployment, its due time in the scheduler) build
a :class:`PoolCall` and run :func:`timed_sync`, one at a time per pool (the
pool's lock).

What triggers a sync decides whether the scale is evaluated: a spec change, a
NOTIFY, changed queue figures, the poll interval (``spec.scaling.pollInterval``, only
while the database's stats round cannot read the queue: :func:`polled_by_round`) and the
decision's ``reconsider_at`` do; a status refresh reuses the last decision unless the
queue became readable or unreadable since. Every sync writes the status it observed
when it differs from what the pool shows (``refresh.write_delay`` spaces writes of mere
figures), with the operator's own client, and leaves the pool's next due time in the
scheduler (``refresh.next_due``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from workerfleet.operator import (
    builders,
    children,
    conditions,
    drain,
    metrics,
    models,
    reasons,
    refresh,
    rollup,
    scaling,
    schedules,
    validation,
)
from workerfleet.operator.errors import ApplyError, QueueAccessError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.rollup import Observation, QueueProblem, QueueReading
from workerfleet.operator.runtime import POOL, PoolScaling, PoolState, Runtime
from workerfleet.operator.scaling_status import ScalingReport
from workerfleet.operator.views import DeploymentView, PodView, ServiceView
from workerfleet.worker import connector
from workerfleet.worker.models import QueueStats, ScheduleRow, WorkerStats

QueueSeen = QueueReading | QueueProblem | None
"""What the queue step found; None when the spec is invalid and the queue was not read."""
Trigger = Literal["spec", "status", "poll", "notify", "queue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolCall:
    """One kopf call for one WorkerPool: the handler's arguments, typed.

    The indexes are kept as kopf passed them (live mappings the watch keeps
    current) and read by the steps, under the pool's lock, when they need them.
    """

    runtime: Runtime
    state: PoolState
    body: Any
    """The WorkerPool as the watch last showed it."""
    namespace: str
    name: str
    uid: str
    pods_index: Mapping[Any, Any]
    deployments_index: Mapping[Any, Any]
    services_index: Mapping[Any, Any]
    write_status: bool = True
    """False: the status is left for a sync that may write it (the fixed cadence)."""

    @property
    def key(self) -> tuple[str, str]:
        """How the indexes key the pool's children."""
        return (self.namespace, self.name)

    @property
    def pool_key(self) -> str:
        """The pool's name in the workers table."""
        return builders.pool_key(self.namespace, self.name)

    @property
    def owner(self) -> builders.Owner:
        return builders.Owner(name=self.name, namespace=self.namespace, uid=self.uid)

    def deployment(self) -> DeploymentView | None:
        found: DeploymentView | None = _first(self.deployments_index.get(self.key))
        return found

    def service(self) -> ServiceView | None:
        found: ServiceView | None = _first(self.services_index.get(self.key))
        return found

    def pods(self) -> list[PodView]:
        return [p for p in self.pods_index.get(self.key, ()) if isinstance(p, PodView)]


@dataclass(frozen=True)
class Parsed:
    """The parse step: the spec when it can work (None when not), and why not."""

    spec: models.WorkerPoolSpec | None
    problem: str | None
    paused: bool

    @property
    def to_apply(self) -> models.WorkerPoolSpec | None:
        """The spec the operator acts on: valid and not paused."""
        return None if self.paused else self.spec


@dataclass(frozen=True)
class Applied:
    """The apply step: the Deployment afterwards, and why applying failed, if it did."""

    deployment: DeploymentView | None
    spec_problem: str | None
    """The parse problem, or the API server refusing the built manifest (the spec's fault)."""
    apply_problem: str | None = None
    """A transient failure (connection, conflict): the next sync tries again."""


@dataclass(frozen=True)
class Decided:
    """The decide step: the replicas to ask for, and what the status says about scaling."""

    replicas: int | None
    report: ScalingReport


async def timed_sync(
    kind: str, call: PoolCall, trigger: Trigger = "status", notified_at: float | None = None
) -> str | None:
    """:func:`sync_pool`, counted and timed as a reconcile of ``kind``: ok, invalid or error."""
    started = time.monotonic()
    result = "error"
    try:
        problem = await sync_pool(call, trigger, notified_at)
        result = "invalid" if problem is not None else "ok"
        return problem
    finally:
        metrics.record_reconcile(kind, result, time.monotonic() - started)


async def sync_pool(
    call: PoolCall, trigger: Trigger = "status", notified_at: float | None = None
) -> str | None:
    """One reconcile of one pool; returns the spec problem, if any.

    ``notified_at``: when the NOTIFY behind a ``notify`` sync arrived (monotonic);
    the queue read must be newer, and the reaction is measured from it.
    """
    async with call.state.lock:
        now = time.monotonic()
        call.state.synced_at = now
        if call.write_status:
            call.state.refreshed_at = now
        flush_scale_events(call, now)
        parsed = parse(call)
        queue = await read_queue(call, parsed.spec, notified_at)
        live = current_deployment(call)
        await drain.follow(call, now)
        decided = decide_replicas(
            call.state.scaling, call.pool_key, parsed, queue, live, trigger, now
        )
        replicas = await shrink_safely(call, parsed, live, decided.replicas)
        applied = await apply_children(call, parsed, replicas, live)
        record_scale(call, decided, live, applied, notified_at)
        scheduled = await read_schedules(call, parsed.spec)
        observation = observe(call, parsed, queue, replicas, applied, decided, scheduled)
        write_at = await report(call, observation, parsed.spec, time.monotonic())
        schedule_next(call, observation, time.monotonic(), write_at)
        return applied.spec_problem


def parse(call: PoolCall) -> Parsed:
    """The spec, parsed once per version of it (the watch hands a new body every event)."""
    raw_spec = call.body.get("spec") or {}
    cached = call.state.parsed
    if cached is not None and cached[0] == raw_spec:
        found: Parsed = cached[1]
        return found
    parsed = validation.parse_pool(call.name, raw_spec)
    result = Parsed(
        spec=parsed.spec if parsed.problem is None else None,
        problem=parsed.problem,
        paused=bool(raw_spec.get("paused")),
    )
    call.state.parsed = (raw_spec, result)
    return result


async def read_queue(
    call: PoolCall, spec: models.WorkerPoolSpec | None, newer_than: float | None = None
) -> QueueSeen:
    """The pool's queue figures, or why they cannot be read; LISTENs on its database.

    No backoff here: the inspector backs off per database and the Secret reader
    per Secret, each answering with its last error at once while it waits.
    """
    if spec is None:
        return None
    ref = spec.database.secret_ref
    dsn = None
    try:
        dsn = await call.runtime.secrets.dsn(call.namespace, ref.name, ref.key)
        call.state.scaling.dsn = dsn
        call.runtime.listen(call.key, dsn, spec.queue)
        snapshot = await call.runtime.inspector.snapshot(dsn, newer_than)
    except QueueAccessError as error:
        if dsn is not None:  # the database's round tells when it answers again
            figures = f"{error.reason}: {error.message}"
            call.runtime.rounds.attach(call.key, dsn, spec.queue, call.pool_key, figures)
        # A queue not created yet is normal at start (the workers create it): Unknown.
        unknown = error.reason == reasons.QUEUE_SCHEMA_MISSING
        return QueueProblem(error.reason, error.message, "Unknown" if unknown else "False")
    reading = QueueReading(
        stats=snapshot.queues.get(spec.queue),
        workers=snapshot.workers.get(call.pool_key),
    )
    seen = (reading.stats, reading.workers)
    call.runtime.rounds.attach(call.key, dsn, spec.queue, call.pool_key, seen)
    return reading


def current_deployment(call: PoolCall) -> DeploymentView | None:
    """The Deployment as the watch shows it, or as the operator's last apply returned it
    when that is newer (the watch lags a patch by a few milliseconds)."""
    seen, applied = call.deployment(), call.state.scaling.applied
    if seen is None or applied is None or applied.uid != seen.uid:
        return seen
    return applied if applied.generation > seen.generation else seen


def evaluation_due(
    state: PoolScaling, trigger: Trigger, readable: bool, poll_seconds: float, now: float
) -> bool:
    """Whether this sync makes a new scaling decision (see the module's docstring): also
    once the scale-up period that limited the last decision ends."""
    if trigger != "status" or state.decision is None or state.evaluated_at is None:
        return True
    reconsider_at = state.decision.reconsider_at
    if reconsider_at is not None and now >= reconsider_at > state.evaluated_at:
        return True
    return now - state.evaluated_at >= poll_seconds or readable != state.read_queue


async def read_schedules(
    call: PoolCall, spec: models.WorkerPoolSpec | None
) -> Sequence[ScheduleRow] | None:
    """The pool's schedules as the database records them (the schedule daemon writes
    them); None when unknown, and the status keeps what it said."""
    if spec is None:
        return None
    if not spec.schedules and not (call.body.get("status") or {}).get("schedules"):
        return ()
    ref = spec.database.secret_ref
    try:
        dsn = await call.runtime.secrets.dsn(call.namespace, ref.name, ref.key)
        repository = await call.runtime.inspector.repository(dsn)
        return await repository.list_schedules(call.pool_key)
    except (QueueAccessError, *connector.TRANSIENT_ERRORS, asyncpg.PostgresError):
        return None  # QueueReachable tells what is wrong with the database


def decide_replicas(
    state: PoolScaling,
    pool: str,
    parsed: Parsed,
    queue: QueueSeen,
    live: DeploymentView | None,
    trigger: Trigger,
    now: float,
) -> Decided:
    """How many workers to ask for; the live count when the spec is invalid or paused.

    ``scaling.decide`` is the one call that sizes a pool, from everything the
    policy looks at (:func:`scaling_inputs`) and the pool's history.
    """
    current = live.replicas if live is not None else None
    spec = parsed.to_apply
    if spec is None:
        state.history = scaling.History()  # running again starts a fresh window
        state.decision, state.held, state.evaluated_at = None, None, None
        report = ScalingReport(None, paused=parsed.paused, invalid=parsed.problem is not None)
        return Decided(current, report)
    state.poll_seconds = spec.scaling.poll_interval_seconds
    readable = isinstance(queue, QueueReading)
    if evaluation_due(state, trigger, readable, state.poll_seconds, now):
        inputs = scaling_inputs(pool, spec, queue, current, state.history, now)
        state.decision = scaling.decide(inputs)
        state.history, state.evaluated_at, state.read_queue = state.decision.history, now, readable
        metrics.SCALING_EVALUATIONS.labels(trigger=trigger).inc()
    assert state.decision is not None
    report = ScalingReport(state.decision, warning=scaling.idle_slots_warning(spec))
    return Decided(state.decision.replicas, report)


def scaling_inputs(
    pool: str,
    spec: models.WorkerPoolSpec,
    queue: QueueSeen,
    current: int | None,
    history: scaling.History,
    now: float,
) -> scaling.ScalingInputs:
    """The queue and workers as the policy sees them: None only when the queue could not
    be read (a queue or pool with no rows yet counts as all zero)."""
    reading = queue if isinstance(queue, QueueReading) else None
    return scaling.ScalingInputs(
        spec=spec,
        current=current,
        queue=_queue_stats(spec.queue, reading),
        workers=_worker_stats(pool, reading),
        history=history,
        now=now,
    )


async def shrink_safely(
    call: PoolCall, parsed: Parsed, live: DeploymentView | None, decided: int | None
) -> int | None:
    """The decided replicas, or more while a scale-in cannot yet take only idle workers.

    Going up (or staying), drains no longer needed are given back first.
    """
    state = call.state.scaling
    spec = parsed.to_apply
    current = live.replicas if live is not None else None
    if spec is None or decided is None or current is None or decided >= current:
        state.held = None
        if spec is not None and decided is not None:
            await drain.give_back_unneeded(call)
        return decided
    shrunk = await drain.shrink(call, spec, current, decided)
    state.held = shrunk.held if shrunk.replicas > decided else None
    return shrunk.replicas


def record_scale(
    call: PoolCall,
    decided: Decided,
    live: DeploymentView | None,
    applied: Applied,
    notified_at: float | None,
) -> None:
    """Count a change of replicas, tell it (rate-limited Event), time the reaction to it."""
    state = call.state.scaling
    if applied.deployment is not None and applied.deployment is not live:
        state.applied = applied.deployment
    before = live.replicas if live is not None else None
    after = applied.deployment.replicas if applied.deployment is not None else None
    decision = decided.report.decision
    if before is None or after is None or before == after or decision is None:
        return
    now = time.monotonic()
    direction = "up" if after > before else "down"
    reason = reasons.SCALE_IN_HELD if state.held is not None else decision.reason
    metrics.SCALE_CHANGES.labels(direction=direction, reason=reason).inc()
    state.last_scale_at = datetime.now(UTC)
    if direction == "up" and notified_at is not None:
        metrics.SCALE_REACTION_SECONDS.observe(now - notified_at)
    message = (
        decision.message if after == decision.replicas else f"{before} -> {after}: {state.held}"
    )
    event = state.events.changed(before, after, message, now)
    if event is not None:
        post(call.body, "Normal", reasons.EVENT_SCALED, event)
    log.info(
        "scaled",
        extra={"pool": call.pool_key, "from": before, "to": after, "reason": reason},
    )


def flush_scale_events(call: PoolCall, now: float) -> None:
    """Post the summary of scale changes held back by the Event rate limit, once due."""
    summary = call.state.scaling.events.flush(now)
    if summary is not None:
        post(call.body, "Normal", reasons.EVENT_SCALED, summary)


async def apply_children(
    call: PoolCall, parsed: Parsed, desired: int | None, live: DeploymentView | None
) -> Applied:
    """The Deployment and the metrics Service, applied where they differ from the spec."""
    spec = parsed.to_apply
    if spec is None or desired is None:
        return Applied(live, parsed.problem)
    try:
        await children.ensure_service_account(call.runtime, spec, call.owner, call.state)
        live = await children.ensure_deployment(
            call.runtime, call.body, spec, call.owner, desired, live, call.state
        )
        await children.ensure_service(call.runtime, spec, call.owner, call.service(), call.state)
    except ApplyError as error:
        if error.invalid:
            return Applied(live, spec_problem=error.message)
        return Applied(live, spec_problem=None, apply_problem=error.message)
    return Applied(live, spec_problem=None)


def observe(
    call: PoolCall,
    parsed: Parsed,
    queue: QueueSeen,
    desired: int | None,
    applied: Applied,
    decided: Decided | None = None,
    scheduled: Sequence[ScheduleRow] | None = None,
) -> Observation:
    """Everything the status is made of, gathered at one instant."""
    pods = call.pods()
    now = datetime.now(UTC)
    ready = sum(1 for p in pods if p.ready and not p.deleting)
    call.state.short_since = rollup.next_short_since(call.state.short_since, ready, desired, now)
    scaling_report = None
    if decided is not None:
        held = call.state.scaling.held
        scaling_report = ScalingReport(
            decided.report.decision,
            paused=decided.report.paused,
            invalid=decided.report.invalid or applied.spec_problem is not None,
            warning=decided.report.warning,
            held=held,
        )
    return Observation(
        name=call.name,
        generation=call.body.get("metadata", {}).get("generation"),
        paused=parsed.paused,
        spec_problem=applied.spec_problem,
        desired=desired,
        deployment=applied.deployment,
        pods=pods,
        queue=queue,
        short_since=call.state.short_since,
        previous=previous_status(call),
        now=now,
        apply_problem=applied.apply_problem,
        scaling=scaling_report,
        last_scale_time=call.state.scaling.last_scale_at,
        schedules="unknown" if scheduled is None else schedules.status_section(scheduled, now),
    )


async def report(
    call: PoolCall, observation: Observation, spec: models.WorkerPoolSpec | None, now: float
) -> float | None:
    """Write the status when it changed (spaced, see ``refresh.write_delay``), post an Event
    per transition, export metrics (with the spec's replicas.max; None while the spec is
    invalid); returns when a held-back write is due, if one is."""
    result = rollup.rollup(observation)
    max_replicas = None if spec is None else spec.replicas.max
    metrics.record_pool(call.namespace, call.name, result.status, max_replicas)
    moved = conditions.transitions(
        observation.previous.get("conditions"), result.status.get("conditions") or []
    )
    delay = refresh.write_delay(result.changed, bool(moved), call.state.written_at, now)
    if delay is None:
        return None
    if delay > 0 or not call.write_status:
        return now + delay if call.write_status else None
    patch = rollup.status_patch(observation.previous, result.status)
    stored = await call.runtime.kube.patch_status(
        models.WORKERPOOL_PLURAL, call.namespace, call.name, patch
    )
    metrics.STATUS_WRITES.labels(kind=models.WORKERPOOL_KIND).inc()
    if stored is None:
        return None  # the pool is gone
    call.state.written_at, call.state.written = now, patch
    call.runtime.activity.wrote(f"{call.namespace}/{call.name}", result.status)
    for event in result.events:
        post(call.body, event.type, event.reason, event.message)
    return None


def previous_status(call: PoolCall) -> dict[str, Any]:
    """The status as the watch shows it, with this process's last write on top until the
    watch shows that write too (a sync soon after a write must not write it again)."""
    shown = dict(call.body.get("status") or {})
    written = call.state.written
    if written is None:
        return shown
    merged = rollup.apply_merge_patch(shown, written)
    if merged == shown:
        call.state.written = None  # the watch caught up
    return merged


def schedule_next(
    call: PoolCall, observation: Observation, now: float, write_at: float | None
) -> None:
    """The pool's next due time: whatever changes with time alone, at the latest the
    backstop resync (the pool may be gone meanwhile: then nothing)."""
    runtime = call.runtime
    entry = runtime.pools.get(call.key)
    if entry is None or entry.state is not call.state:
        return
    scaling_state = call.state.scaling
    poll_at = None
    if (
        scaling_state.evaluated_at is not None
        and scaling_state.poll_seconds is not None
        and not polled_by_round(call, now)
    ):
        poll_at = scaling_state.evaluated_at + scaling_state.poll_seconds
    decision = scaling_state.decision
    events = scaling_state.events
    flush_at = None
    if events.held is not None and events.posted_at is not None:
        flush_at = events.posted_at + events.interval_seconds
    in_flight = scaling_state.in_flight
    grace = refresh.grace_ends_in(observation.pods, observation.short_since, observation.now)
    refreshed_at = call.state.refreshed_at if call.state.refreshed_at is not None else now
    backstop = refreshed_at + runtime.settings.status_resync_interval
    due = refresh.next_due(
        now,
        backstop,
        poll_at,
        decision.reconsider_at if decision is not None else None,
        flush_at,
        in_flight.deadline if in_flight is not None else None,
        call.state.apply_failures.retry_at(),
        now + grace if grace is not None else None,
        write_at,
    )
    call.state.due_is_backstop = due >= backstop
    runtime.scheduler.set((POOL, call.key), due)


def polled_by_round(call: PoolCall, now: float) -> bool:
    """Whether the pool's database round stands in for its poll: the last evaluation read
    the queue, the round reads the database and pokes the pool when its figures change
    (what changes with time alone has its own due time: ``Decision.reconsider_at``). Not
    with status_refresh=interval, whose status cadence the poll is."""
    return (
        call.runtime.settings.status_refresh == "events"
        and call.state.scaling.read_queue
        and call.runtime.rounds.covers(call.key, now)
    )


def _queue_stats(queue: str, reading: QueueReading | None) -> QueueStats | None:
    if reading is None:
        return None
    if reading.stats is not None:
        return reading.stats
    return QueueStats(
        queue=queue,
        pending=0,
        scheduled=0,
        running=0,
        succeeded=0,
        dead=0,
        cancelled=0,
        oldest_pending_seconds=None,
        finished_last_minute=0,
    )


def _worker_stats(pool: str, reading: QueueReading | None) -> WorkerStats | None:
    if reading is None:
        return None
    if reading.workers is not None:
        return reading.workers
    return WorkerStats(pool=pool, online=0, busy=0, idle=0, draining=0, dead=0)


def _first(values: Iterable[Any] | None) -> Any:
    for value in values or ():
        return value
    return None
