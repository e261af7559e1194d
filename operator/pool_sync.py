"""One sync of one WorkerPool, as a chain of named steps.

    parse -> read queue -> read schedules -> decide replicas -> apply children -> observe -> report

Each step is a small function of what the steps before it produced, in the
style of CloudNativePG's reconciler: the decisions (``validation``,
``replicas.decide``, ``rollup``) are pure and unit-tested, the steps only move
data between them and the cluster. The kopf handlers (``handlers.py``) build a
:class:`PoolCall` and run :func:`timed_sync`; both the spec handlers and the
status timer go through here, one at a time per pool (the pool's lock).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from workerfleet.operator import (
    builders,
    children,
    metrics,
    models,
    reasons,
    replicas,
    rollup,
    schedules,
    validation,
)
from workerfleet.operator.errors import ApplyError, QueueAccessError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.rollup import Observation, QueueProblem, QueueReading
from workerfleet.operator.runtime import PoolState, Runtime
from workerfleet.operator.views import DeploymentView, PodView, ServiceView
from workerfleet.worker import connector
from workerfleet.worker.models import QueueStats, ScheduleRow, WorkerStats

QueueSeen = QueueReading | QueueProblem | None
"""What the queue step found; None when the spec is invalid and the queue was not read."""


@dataclass(frozen=True)
class PoolCall:
    """One kopf call for one WorkerPool: the handler's arguments, typed.

    The indexes are kept as kopf passed them (live mappings the watch keeps
    current) and read by the steps, under the pool's lock, when they need them.
    """

    runtime: Runtime
    state: PoolState
    body: Any
    """The WorkerPool as kopf saw it (a ``kopf.Body``)."""
    patch: Any
    """Where the status goes (a ``kopf.Patch``)."""
    namespace: str
    name: str
    uid: str
    pods_index: Mapping[Any, Any]
    deployments_index: Mapping[Any, Any]
    services_index: Mapping[Any, Any]

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


async def timed_sync(kind: str, call: PoolCall) -> str | None:
    """:func:`sync_pool`, counted and timed as a reconcile of ``kind``: ok, invalid or error."""
    started = time.monotonic()
    result = "error"
    try:
        problem = await sync_pool(call)
        result = "invalid" if problem is not None else "ok"
        return problem
    finally:
        metrics.record_reconcile(kind, result, time.monotonic() - started)


async def sync_pool(call: PoolCall) -> str | None:
    """One reconcile of one pool; returns the spec problem, if any."""
    async with call.state.lock:
        call.state.synced_at = time.monotonic()
        parsed = parse(call)
        queue = await read_queue(call, parsed.spec)
        scheduled = await read_schedules(call, parsed.spec)
        live = call.deployment()
        desired = decide_replicas(call.pool_key, parsed, queue, live)
        applied = await apply_children(call, parsed, desired, live)
        report(call, observe(call, parsed, queue, desired, applied, scheduled))
        return applied.spec_problem


def parse(call: PoolCall) -> Parsed:
    raw_spec = call.body.get("spec") or {}
    parsed = validation.parse_pool(call.name, raw_spec)
    return Parsed(
        spec=parsed.spec if parsed.problem is None else None,
        problem=parsed.problem,
        paused=bool(raw_spec.get("paused")),
    )


async def read_queue(call: PoolCall, spec: models.WorkerPoolSpec | None) -> QueueSeen:
    """The pool's queue figures, or why they cannot be read.

    No backoff here: the inspector backs off per database and the Secret reader
    per Secret, each answering with its last error at once while it waits.
    """
    if spec is None:
        return None
    ref = spec.database.secret_ref
    try:
        dsn = await call.runtime.secrets.dsn(call.namespace, ref.name, ref.key)
        snapshot = await call.runtime.inspector.snapshot(dsn)
    except QueueAccessError as error:
        # A queue not created yet is normal at start (the workers create it): Unknown.
        unknown = error.reason == reasons.QUEUE_SCHEMA_MISSING
        return QueueProblem(error.reason, error.message, "Unknown" if unknown else "False")
    return QueueReading(
        stats=snapshot.queues.get(spec.queue),
        workers=snapshot.workers.get(call.pool_key),
    )


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
    pool: str, parsed: Parsed, queue: QueueSeen, live: DeploymentView | None
) -> int | None:
    """How many workers to ask for; the live count when the spec is invalid or paused.

    ``replicas.decide`` is the one call that sizes a pool, from everything a
    replica policy may look at (:func:`replica_inputs`).
    """
    current = live.replicas if live is not None else None
    spec = parsed.to_apply
    if spec is None:
        return current
    return replicas.decide(replica_inputs(pool, spec, queue, current, time.monotonic())).replicas


def replica_inputs(
    pool: str, spec: models.WorkerPoolSpec, queue: QueueSeen, current: int | None, now: float
) -> replicas.ReplicaInputs:
    """The queue and workers as the policy sees them: None only when the queue could not
    be read (a queue or pool with no rows yet counts as all zero)."""
    reading = queue if isinstance(queue, QueueReading) else None
    return replicas.ReplicaInputs(
        spec=spec,
        current=current,
        queue=_queue_stats(spec.queue, reading),
        workers=_worker_stats(pool, reading),
        now=now,
    )


async def apply_children(
    call: PoolCall, parsed: Parsed, desired: int | None, live: DeploymentView | None
) -> Applied:
    """The Deployment and the metrics Service, applied where they differ from the spec."""
    spec = parsed.to_apply
    if spec is None or desired is None:
        return Applied(live, parsed.problem)
    try:
        live = await children.ensure_deployment(
            call.runtime, call.body, spec, call.owner, desired, live, call.state
        )
        await children.ensure_service(call.runtime, spec, call.owner, call.service())
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
    scheduled: Sequence[ScheduleRow] | None = None,
) -> Observation:
    """Everything the status is made of, gathered at one instant."""
    pods = call.pods()
    now = datetime.now(UTC)
    ready = sum(1 for p in pods if p.ready and not p.deleting)
    call.state.short_since = rollup.next_short_since(call.state.short_since, ready, desired, now)
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
        previous=call.body.get("status") or {},
        now=now,
        apply_problem=applied.apply_problem,
        schedules="unknown" if scheduled is None else schedules.status_section(scheduled, now),
    )


def report(call: PoolCall, observation: Observation) -> None:
    """Write the status when it changed, post an Event per transition, export metrics."""
    result = rollup.rollup(observation)
    if result.changed:
        call.patch.status.update(rollup.status_patch(observation.previous, result.status))
        call.runtime.activity.wrote(f"{call.namespace}/{call.name}", result.status)
    for event in result.events:
        post(call.body, event.type, event.reason, event.message)
    metrics.record_pool(call.namespace, call.name, result.status)


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
