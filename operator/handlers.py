"""kopf handlers for WorkerPools: thin, everything decided by pure functions elsewhere.

* ``reconcile_pool`` (create/update of the spec/resume): validate, evaluate the
  scale, apply the Deployment and metrics Service, write status; a spec that
  cannot work ends in ``kopf.PermanentError`` after its condition names the field.
* ``pool_tick`` (a timer every second): evaluate the scale when the pool's
  poll interval is due, else refresh the status every few seconds (read the
  queue, restore a Deployment or Service edited or deleted by hand, roll
  everything up into status).
* indexes of the pools' pods, Deployments and Services, so no handler lists them.
* ``worker_pod_event``: a worker container that ended or restarted, or a pod
  gone, has its dead worker incarnations' jobs released at once
  (``incarnations.py``).

All paths run ``pool_sync.sync_pool`` (the named steps of one sync) under the
pool's lock; so does a NOTIFY on the pool's queue, outside kopf, through the
call each handler leaves in ``Runtime.scalers``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import kopf

from workerfleet.operator import builders, incarnations, metrics
from workerfleet.operator.kopf_glue import NO_INDEX, WORKERPOOLS, in_namespace, runtime_of
from workerfleet.operator.pool_sync import PoolCall, flush_scale_events, timed_sync
from workerfleet.operator.runtime import PoolState
from workerfleet.operator.views import DeploymentView, PodView, ServiceView, owning_pool

# The timer wakes often but syncs only when due: every STATUS_INTERVAL_SECONDS, or sooner
# (never more often than MIN_SYNC_INTERVAL_SECONDS) when the pool's pods or Deployment
# changed, so a crashed worker shows in status within about two seconds.
TIMER_INTERVAL_SECONDS = 1.0
STATUS_INTERVAL_SECONDS = 5.0
MIN_SYNC_INTERVAL_SECONDS = 2.0
MANAGED = {builders.LABEL_MANAGED_BY: builders.MANAGER}
# kopf passes each index to every handler as a keyword named like the index function.
PODS_INDEX = "worker_pods"
DEPLOYMENTS_INDEX = "worker_deployments"
SERVICES_INDEX = "metrics_services"


def pool_state(memo: Any) -> PoolState:
    state = memo.get("pool_state")
    if state is None:
        state = memo["pool_state"] = PoolState()
    return state  # type: ignore[no-any-return]


def pool_call(kwargs: Mapping[str, Any]) -> PoolCall:
    """The typed arguments of one handler call; also left for NOTIFYs (see ``remember``)."""
    memo = kwargs["memo"]
    call = PoolCall(
        runtime=runtime_of(memo),
        state=pool_state(memo),
        body=kwargs["body"],
        patch=kwargs["patch"],
        namespace=in_namespace(kwargs["namespace"]),
        name=kwargs["name"],
        uid=kwargs["uid"],
        pods_index=kwargs.get(PODS_INDEX, NO_INDEX),
        deployments_index=kwargs.get(DEPLOYMENTS_INDEX, NO_INDEX),
        services_index=kwargs.get(SERVICES_INDEX, NO_INDEX),
    )
    remember(call)
    return call


def remember(call: PoolCall) -> None:
    """How a NOTIFY evaluates this pool: the same sync, outside kopf (no status patch)."""
    outside = dataclasses.replace(call, patch=None)

    async def scale(since: float) -> None:
        await timed_sync("WorkerPoolNotify", outside, "notify", since)

    call.runtime.scalers[call.key] = scale


# -- indexes: the pools' children, kept current by the watch ------------------------------------


def _child_of(namespace: str | None, meta: Mapping[str, Any], memo: Any) -> tuple[str, str] | None:
    """The (namespace, pool) a managed child belongs to; marks the pool for an early sync."""
    runtime = runtime_of(memo)
    runtime.activity.event()
    pool = owning_pool(meta)
    if pool is None:
        return None
    runtime.child_changed(in_namespace(namespace), pool)
    return (in_namespace(namespace), pool)


@kopf.index("pods", labels=MANAGED)
def worker_pods(
    namespace: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> dict[tuple[str, str], PodView] | None:
    key = _child_of(namespace, meta, memo)
    return None if key is None else {key: PodView.from_body(meta, status, spec)}


@kopf.on.event("pods", labels=MANAGED)
async def worker_pod_event(
    event: Mapping[str, Any],
    namespace: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    """The watch shows a worker die seconds before its lease would: act on it at once."""
    await incarnations.on_pod_event(
        runtime_of(memo), in_namespace(namespace), event.get("type"), meta, spec, status
    )


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def worker_deployments(
    namespace: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> dict[tuple[str, str], DeploymentView] | None:
    key = _child_of(namespace, meta, memo)
    return None if key is None else {key: DeploymentView.from_body(meta, spec, status)}


@kopf.index("v1", "services", labels=MANAGED)
def metrics_services(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> dict[tuple[str, str], ServiceView] | None:
    key = _child_of(namespace, meta, memo)
    return None if key is None else {key: ServiceView.from_body(meta)}


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
        runtime_of(memo).forget_pool((in_namespace(namespace), name))
        return
    activity.event(key)
    activity.observed(key, body.get("status") or {})


# -- the reconcile ------------------------------------------------------------------------------


@kopf.on.resume(*WORKERPOOLS)
@kopf.on.create(*WORKERPOOLS)
@kopf.on.update(*WORKERPOOLS, field="spec")
async def reconcile_pool(**kwargs: Any) -> None:
    problem = await timed_sync("WorkerPool", pool_call(kwargs), "spec")
    if problem is not None:
        raise kopf.PermanentError(problem)


def sync_due(synced_at: float | None, changed_at: float | None, now: float) -> bool:
    """Whether the timer should sync now (pure, see TIMER_INTERVAL_SECONDS)."""
    if synced_at is None:
        return True
    since = now - synced_at
    if since >= STATUS_INTERVAL_SECONDS:
        return True
    return changed_at is not None and changed_at > synced_at and since >= MIN_SYNC_INTERVAL_SECONDS


def poll_due(
    evaluated_at: float | None,
    poll_seconds: float | None,
    now: float,
    reconsider_at: float | None = None,
) -> bool:
    """Whether the pool's scale should be evaluated now (pure): spec.scaling.pollInterval
    (the backstop of NOTIFYs), or the end of the scale-up period that limited the last
    decision; at the timer's one-second grain."""
    if evaluated_at is None or poll_seconds is None:
        return False  # no decision yet: the first sync makes one anyway
    if reconsider_at is not None and now >= reconsider_at > evaluated_at:
        return True
    return now - evaluated_at >= poll_seconds


@kopf.timer(*WORKERPOOLS, interval=TIMER_INTERVAL_SECONDS, sharp=True)
async def pool_tick(**kwargs: Any) -> None:
    call = pool_call(kwargs)
    call.runtime.activity.tick()
    now = time.monotonic()
    flush_scale_events(call, now)
    scaling = call.state.scaling
    reconsider_at = scaling.decision.reconsider_at if scaling.decision is not None else None
    if poll_due(scaling.evaluated_at, scaling.poll_seconds, now, reconsider_at):
        await timed_sync("WorkerPoolTick", call, "poll")
    elif sync_due(call.state.synced_at, call.runtime.changed_at.get(call.key), now):
        await timed_sync("WorkerPoolTick", call)
