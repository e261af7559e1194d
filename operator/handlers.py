"""kopf handlers for WorkerPools: thin, everything decided by pure functions elsewhere.

* ``reconcile_pool`` (create/update of the spec/resume): validate, apply the
  Deployment and metrics Service, write status; a spec that cannot work ends
  in ``kopf.PermanentError`` after its condition names the field.
* ``pool_tick`` (a timer every few seconds): read the queue, restore a
  Deployment edited or deleted by hand, roll everything up into status.
* indexes of the pools' pods and Deployments, so no handler lists them.

Both paths run :func:`sync_pool` under the pool's lock.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import kopf

from workerfleet.operator import (
    builders,
    drift,
    metrics,
    models,
    reasons,
    replicas,
    rollup,
    validation,
)
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import backoff_seconds
from workerfleet.operator.kube import ApiException, api_error_message
from workerfleet.operator.rollup import Observation, QueueProblem, QueueReading
from workerfleet.operator.runtime import PoolState, Runtime
from workerfleet.operator.views import DeploymentView, PodView, owning_pool

WORKERPOOLS = (models.GROUP, models.VERSION, models.WORKERPOOL_PLURAL)
# The timer wakes often but syncs only when due: every STATUS_INTERVAL_SECONDS, or sooner
# (never more often than MIN_SYNC_INTERVAL_SECONDS) when the pool's pods or Deployment
# changed, so a crashed worker shows in status within about two seconds.
TIMER_INTERVAL_SECONDS = 1.0
STATUS_INTERVAL_SECONDS = 5.0
MIN_SYNC_INTERVAL_SECONDS = 2.0
# A missing Secret is retried 1, 2, 4, ... seconds apart, but never less often than this.
SECRET_BACKOFF_CAP_SECONDS = 30.0
MANAGED = {builders.LABEL_MANAGED_BY: builders.MANAGER}
# kopf injects its indexes by name; the default only satisfies the handler protocols.
NO_INDEX: Mapping[Any, Any] = MappingProxyType({})
INVALID_STATUS_CODES = (400, 422)

logger = logging.getLogger(__name__)


class ApplyError(Exception):
    def __init__(self, message: str, invalid: bool) -> None:
        super().__init__(message)
        self.message = message
        self.invalid = invalid


def in_namespace(namespace: str | None) -> str:
    """WorkerPools and Monitors are namespaced: kopf always passes their namespace."""
    if namespace is None:
        raise kopf.PermanentError("a namespaced object arrived without a namespace")
    return namespace


def runtime_of(memo: Any) -> Runtime:
    found: Runtime = memo.runtime
    return found


def pool_state(memo: Any) -> PoolState:
    state = memo.get("pool_state")
    if state is None:
        state = memo["pool_state"] = PoolState()
    return state  # type: ignore[no-any-return]


# -- indexes: the pools' children, kept current by the watch ------------------------------------


@kopf.index("pods", labels=MANAGED)
def worker_pods(
    namespace: str | None, meta: Mapping[str, Any], status: Mapping[str, Any], memo: Any, **_: Any
) -> dict[tuple[str, str], PodView] | None:
    runtime = runtime_of(memo)
    runtime.activity.event()
    pool = owning_pool(meta)
    if pool is None:
        return None
    runtime.child_changed(in_namespace(namespace), pool)
    return {(in_namespace(namespace), pool): PodView.from_body(meta, status)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def worker_deployments(
    namespace: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> dict[tuple[str, str], DeploymentView] | None:
    runtime = runtime_of(memo)
    runtime.activity.event()
    pool = owning_pool(meta)
    if pool is None:
        return None
    runtime.child_changed(in_namespace(namespace), pool)
    return {(in_namespace(namespace), pool): DeploymentView.from_body(meta, spec, status)}


@kopf.on.event(*WORKERPOOLS)
def pool_event(
    event: Mapping[str, Any], namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Liveness bookkeeping: which pools exist, and whether our status writes come back."""
    activity = runtime_of(memo).activity
    key = f"{namespace}/{name}"
    body = event.get("object") or {}
    if event.get("type") == "DELETED":
        activity.gone(key)
        metrics.forget_pool(in_namespace(namespace), name)
        runtime_of(memo).changed_at.pop((in_namespace(namespace), name), None)
        return
    activity.event(key)
    activity.observed(key, body.get("status") or {})


# -- the reconcile ------------------------------------------------------------------------------


def first(values: Iterable[Any] | None) -> Any:
    for value in values or ():
        return value
    return None


async def read_queue(
    runtime: Runtime, namespace: str, name: str, spec: models.WorkerPoolSpec, state: PoolState
) -> QueueReading | QueueProblem:
    """The pool's queue figures, or why they cannot be read (retried with backoff)."""
    now = time.monotonic()
    if state.queue_problem is not None and now < state.queue_retry_at:
        return state.queue_problem
    ref = spec.database.secret_ref
    try:
        dsn = await runtime.secrets.dsn(namespace, ref.name, ref.key)
        snapshot = await runtime.inspector.snapshot(dsn)
    except QueueAccessError as error:
        # A queue not created yet is normal at start: ask again at the next sync.
        unknown = error.reason == reasons.QUEUE_SCHEMA_MISSING
        state.queue_failures = 0 if unknown else state.queue_failures + 1
        delay = min(backoff_seconds(state.queue_failures), SECRET_BACKOFF_CAP_SECONDS)
        state.queue_retry_at = now + delay
        state.queue_problem = QueueProblem(
            error.reason, error.message, "Unknown" if unknown else "False"
        )
        return state.queue_problem
    state.queue_failures = 0
    state.queue_problem = None
    return QueueReading(
        stats=snapshot.queues.get(spec.queue),
        workers=snapshot.workers.get(builders.pool_key(namespace, name)),
    )


async def apply(runtime: Runtime, manifest: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return await runtime.kube.apply(manifest)
    except ApiException as error:
        kind = manifest["kind"]
        message = f"{kind} {manifest['metadata']['name']}: {api_error_message(error)}"
        raise ApplyError(message, invalid=error.status in INVALID_STATUS_CODES) from None
    except Exception as error:  # connection trouble: the next tick retries
        raise ApplyError(f"{manifest['kind']} apply failed: {error}", invalid=False) from None


async def ensure_deployment(
    runtime: Runtime,
    body: Any,
    spec: models.WorkerPoolSpec,
    owner: builders.Owner,
    desired: int,
    live: DeploymentView | None,
    state: PoolState,
) -> DeploymentView | None:
    manifest = builders.deployment(spec, owner, desired)
    cause = drift.apply_cause(builders.spec_hash(manifest), desired, live, state.written_generation)
    if cause is None:
        return live
    stored = await apply(runtime, manifest)
    meta = stored.get("metadata", {})
    view = DeploymentView.from_body(meta, stored.get("spec", {}), stored.get("status", {}))
    previous_uid = state.deployment_uid or (live.uid if live else None)
    state.written_generation = view.generation
    state.deployment_uid = view.uid
    metrics.DEPLOYMENT_APPLIES.labels(cause=cause).inc()
    if cause == "missing":
        restored = previous_uid is not None and previous_uid != view.uid
        reason = reasons.EVENT_DEPLOYMENT_RESTORED if restored else reasons.EVENT_DEPLOYMENT_CREATED
        verb = "recreated after it was deleted" if restored else "created"
        if restored or view.generation == 1:
            post(body, "Normal", reason, f"Deployment {view.name} {verb}")
    elif cause == "edited":
        post(
            body,
            "Normal",
            reasons.EVENT_DEPLOYMENT_RESTORED,
            f"Deployment {view.name} was edited by hand; the pool's spec was applied again",
        )
    elif cause == "spec":
        post(
            body,
            "Normal",
            reasons.EVENT_DEPLOYMENT_UPDATED,
            f"Deployment {view.name} updated to spec {builders.spec_hash(manifest)}",
        )
    return view


async def ensure_service(
    runtime: Runtime, spec: models.WorkerPoolSpec, owner: builders.Owner, state: PoolState
) -> None:
    if not spec.metrics.service:
        if state.service_hash != "absent":
            await runtime.kube.delete_service(
                owner.namespace, builders.metrics_service_name(owner.name)
            )
            state.service_hash = "absent"
        return
    manifest = builders.metrics_service(owner)
    wanted = builders.spec_hash(manifest)
    if state.service_hash != wanted:
        await apply(runtime, manifest)
        state.service_hash = wanted


def post(body: Any, kind: str, reason: str, message: str) -> None:
    if body.get("metadata", {}).get("deletionTimestamp"):
        return  # its namespace may be going too, and refuses new Events
    kopf.event(body, type=kind, reason=reason, message=message)
    metrics.EVENTS.labels(type=kind, reason=reason).inc()


async def sync_pool(
    *,
    memo: Any,
    body: Any,
    patch: Any,
    namespace: str,
    name: str,
    uid: str,
    worker_pods: Mapping[Any, Any],
    worker_deployments: Mapping[Any, Any],
) -> str | None:
    """One reconcile of one pool; returns the spec problem, if any."""
    runtime = runtime_of(memo)
    state = pool_state(memo)
    async with state.lock:
        state.synced_at = time.monotonic()
        key = (namespace, name)
        raw_spec = body.get("spec") or {}
        parsed = validation.parse_pool(name, raw_spec)
        spec = parsed.spec if parsed.problem is None else None
        paused = bool(raw_spec.get("paused"))
        live: DeploymentView | None = first(worker_deployments.get(key))
        queue: QueueReading | QueueProblem | None = None
        desired: int | None = live.replicas if live is not None else None
        spec_problem = parsed.problem
        apply_problem = None
        if spec is not None:
            queue = await read_queue(runtime, namespace, name, spec, state)
            reading = queue if isinstance(queue, QueueReading) else None
            if not paused:
                decision = replicas.decide(
                    replicas.ReplicaInputs(
                        spec=spec,
                        current=desired,
                        queue=reading.stats if reading else None,
                        workers=reading.workers if reading else None,
                        now=time.monotonic(),
                    )
                )
                desired = decision.replicas
                owner = builders.Owner(name=name, namespace=namespace, uid=uid)
                try:
                    live = await ensure_deployment(runtime, body, spec, owner, desired, live, state)
                    await ensure_service(runtime, spec, owner, state)
                except ApplyError as error:
                    if error.invalid:
                        spec_problem = error.message
                    else:
                        apply_problem = error.message
        pods = [p for p in worker_pods.get(key, ()) if isinstance(p, PodView)]
        now = datetime.now(UTC)
        ready = sum(1 for p in pods if p.ready and not p.deleting)
        state.short_since = rollup.next_short_since(state.short_since, ready, desired, now)
        previous = body.get("status") or {}
        result = rollup.rollup(
            Observation(
                name=name,
                generation=body.get("metadata", {}).get("generation"),
                paused=paused,
                spec_problem=spec_problem,
                desired=desired,
                deployment=live,
                pods=pods,
                queue=queue,
                short_since=state.short_since,
                previous=previous,
                now=now,
                apply_problem=apply_problem,
            )
        )
        if result.changed:
            patch.status.update(rollup.status_patch(previous, result.status))
            runtime.activity.wrote(f"{namespace}/{name}", result.status)
        for event in result.events:
            post(body, event.type, event.reason, event.message)
        metrics.record_pool(namespace, name, result.status)
        return spec_problem


@kopf.on.resume(*WORKERPOOLS)
@kopf.on.create(*WORKERPOOLS)
@kopf.on.update(*WORKERPOOLS, field="spec")
async def reconcile_pool(
    memo: Any,
    body: Any,
    patch: Any,
    namespace: str | None,
    name: str,
    uid: str,
    worker_pods: Mapping[Any, Any] = NO_INDEX,
    worker_deployments: Mapping[Any, Any] = NO_INDEX,
    **_: Any,
) -> None:
    problem = await timed_sync(
        "WorkerPool",
        memo=memo,
        body=body,
        patch=patch,
        namespace=in_namespace(namespace),
        name=name,
        uid=uid,
        worker_pods=worker_pods,
        worker_deployments=worker_deployments,
    )
    if problem is not None:
        raise kopf.PermanentError(problem)


async def timed_sync(kind: str, **sync_arguments: Any) -> str | None:
    """``sync_pool``, counted and timed as a reconcile of ``kind``: ok, invalid or error."""
    started = time.monotonic()
    result = "error"
    try:
        problem = await sync_pool(**sync_arguments)
        result = "invalid" if problem is not None else "ok"
        return problem
    finally:
        metrics.record_reconcile(kind, result, time.monotonic() - started)


def sync_due(synced_at: float | None, changed_at: float | None, now: float) -> bool:
    """Whether the timer should sync now (pure, see TIMER_INTERVAL_SECONDS)."""
    if synced_at is None:
        return True
    since = now - synced_at
    if since >= STATUS_INTERVAL_SECONDS:
        return True
    return changed_at is not None and changed_at > synced_at and since >= MIN_SYNC_INTERVAL_SECONDS


@kopf.timer(*WORKERPOOLS, interval=TIMER_INTERVAL_SECONDS, sharp=True)
async def pool_tick(
    memo: Any,
    body: Any,
    patch: Any,
    namespace: str | None,
    name: str,
    uid: str,
    worker_pods: Mapping[Any, Any] = NO_INDEX,
    worker_deployments: Mapping[Any, Any] = NO_INDEX,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    runtime.activity.tick()
    started = time.monotonic()
    where = in_namespace(namespace)
    if not sync_due(pool_state(memo).synced_at, runtime.changed_at.get((where, name)), started):
        return
    await timed_sync(
        "WorkerPoolTick",
        memo=memo,
        body=body,
        patch=patch,
        namespace=where,
        name=name,
        uid=uid,
        worker_pods=worker_pods,
        worker_deployments=worker_deployments,
    )


def release_timer_finalizers(registry: kopf.OperatorRegistry) -> int:
    """Register the timers without kopf's finalizer; returns how many were changed.

    kopf puts a finalizer on every object that has a timer, only to stop the
    timer before the object disappears. These timers need no goodbye (children
    go by owner references, the timer just stops), and the finalizer would
    block deleting a WorkerPool or Monitor, or its namespace, whenever the
    operator is not running. kopf has no public switch for this, hence the
    registry edit; a unit test fails if kopf's registry changes shape.
    """
    spawning = registry._spawning
    changed = 0
    for index, handler in enumerate(spawning._handlers):
        if handler.requires_finalizer:
            spawning._handlers[index] = dataclasses.replace(handler, requires_finalizer=False)
            changed += 1
    return changed
