"""kopf handlers for WorkerPools: thin, everything decided by pure functions elsewhere.

* ``pool_event`` (every watch event of a WorkerPool): keep its latest body in
  ``Runtime.pools``, or forget it when it is deleted (nothing of it runs on).
* ``reconcile_pool`` (create/update of the spec/resume): validate, evaluate the
  scale, apply the Deployment and metrics Service, write status; a spec that
  cannot work ends in ``kopf.PermanentError`` after its condition names the field.
* indexes of the pools' pods, Deployments and Services, so no handler lists them;
  a change of one brings the pool's status refresh forward.
* ``worker_pod_event``: a worker container that ended or restarted, or a pod
  gone, has its dead worker incarnations' jobs released at once
  (``incarnations.py``).

All syncs run ``pool_sync.sync_pool`` (the named steps of one sync) under the
pool's lock: kopf's spec handlers here, and :func:`run_pool_work` for everything
the pool's trigger gathered outside kopf (a NOTIFY, changed figures in the
database's stats round, a changed child, the pool's due time in the operator's
one scheduler). There is no kopf timer per pool (see ``scheduler.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from workerfleet.operator import builders, incarnations, metrics, schedule_timer
from workerfleet.operator.kopf_glue import WORKERPOOLS, in_namespace, runtime_of
from workerfleet.operator.pool_sync import PoolCall, Trigger, timed_sync
from workerfleet.operator.runtime import Indexes, PoolEntry, PoolKey, Runtime
from workerfleet.operator.triggers import Work
from workerfleet.operator.views import DeploymentView, PodView, ServiceView, owning_pool

MANAGED = {builders.LABEL_MANAGED_BY: builders.MANAGER}
# kopf passes each index to every handler as a keyword named like the index function.
PODS_INDEX = "worker_pods"
DEPLOYMENTS_INDEX = "worker_deployments"
SERVICES_INDEX = "metrics_services"
POOL_REFS_INDEX = "pool_refs"
MONITOR_REFS_INDEX = "monitor_refs"
# What a sync that serves several triggers counts as (the first that applies).
TRIGGER_ORDER = ("notify", "queue", "children", "due")


def keep_indexes(runtime: Runtime, kwargs: Mapping[str, Any]) -> None:
    """Leave kopf's live indexes in the runtime for the syncs run outside kopf."""
    if runtime.indexes.pods is not kwargs.get(PODS_INDEX, runtime.indexes.pods):
        runtime.indexes = Indexes(
            pods=kwargs[PODS_INDEX],
            deployments=kwargs[DEPLOYMENTS_INDEX],
            services=kwargs[SERVICES_INDEX],
            pool_refs=kwargs[POOL_REFS_INDEX],
            monitor_refs=kwargs[MONITOR_REFS_INDEX],
        )
    runtime.pool_work = run_pool_work


def pool_call(runtime: Runtime, key: PoolKey, entry: PoolEntry, write_status: bool) -> PoolCall:
    """The typed arguments of one sync of the pool."""
    namespace, name = key
    return PoolCall(
        runtime=runtime,
        state=entry.state,
        body=entry.body,
        namespace=namespace,
        name=name,
        uid=entry.uid or "",
        pods_index=runtime.indexes.pods,
        deployments_index=runtime.indexes.deployments,
        services_index=runtime.indexes.services,
        write_status=write_status,
    )


def sync_trigger(work: Work) -> tuple[str, Trigger]:
    """What a sync serving ``work`` counts as, and whether it evaluates the scale (pure):
    a NOTIFY or changed queue figures do; a changed child or the due time refresh the
    status and evaluate only when the poll interval says so."""
    label = next((t for t in TRIGGER_ORDER if t in work.triggers), "due")
    if work.since is not None or label == "notify":
        return "notify", "notify"
    if label == "queue":
        return label, "queue"
    return label, "status"


async def run_pool_work(runtime: Runtime, key: PoolKey, work: Work) -> None:
    """One sync of a pool for what its trigger gathered (outside kopf)."""
    entry = runtime.pools.get(key)
    if entry is None:
        return  # deleted meanwhile
    label, trigger = sync_trigger(work)
    if label == "due" and entry.state.due_is_backstop:
        label = "backstop"
    write = runtime.settings.status_refresh == "events" or label in ("due", "backstop")
    metrics.POOL_SYNCS.labels(trigger=label).inc()
    await timed_sync("WorkerPoolSync", pool_call(runtime, key, entry, write), trigger, work.since)


def _adopt(memo: Any, kwargs: Mapping[str, Any]) -> Runtime:
    runtime = runtime_of(memo)
    keep_indexes(runtime, kwargs)
    return runtime


# -- indexes: the pools' children, kept current by the watch ------------------------------------


def _child_of(namespace: str | None, meta: Mapping[str, Any], memo: Any) -> tuple[str, str] | None:
    """The (namespace, pool) a managed child belongs to; brings the pool's sync forward."""
    runtime = runtime_of(memo)
    runtime.activity.event()
    pool = owning_pool(meta)
    if pool is None:
        return None
    runtime.child_changed(in_namespace(namespace), pool)
    return (in_namespace(namespace), pool)


@kopf.index("pods", labels=MANAGED)
async def worker_pods(
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
async def worker_deployments(
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
async def metrics_services(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> dict[tuple[str, str], ServiceView] | None:
    key = _child_of(namespace, meta, memo)
    return None if key is None else {key: ServiceView.from_body(meta)}


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
async def child_event(
    event: Mapping[str, Any], namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    """A Deployment or Service deleted (by hand): kopf drops it from its index without
    calling the indexer, and no poll comes while the stats round covers the pool, so the
    deletion brings the pool's sync forward here (the sync creates the child again)."""
    if event.get("type") == "DELETED":
        pool = owning_pool(meta)
        if pool is not None:
            runtime_of(memo).child_changed(in_namespace(namespace), pool)


@kopf.on.event(*WORKERPOOLS)
async def pool_event(
    event: Mapping[str, Any], namespace: str | None, name: str, memo: Any, **kwargs: Any
) -> None:
    """Which pools exist and their latest bodies; whether our status writes come back."""
    runtime = _adopt(memo, kwargs)
    activity = runtime.activity
    key = f"{namespace}/{name}"
    body = event.get("object") or {}
    pool = (in_namespace(namespace), name)
    if event.get("type") == "DELETED":
        activity.gone(key)
        metrics.forget_pool(*pool)
        runtime.forget_pool(pool)
        return
    entry = runtime.pool_seen(pool, body)
    if entry.schedules is None:
        schedule_timer.attach(runtime, pool, entry)
    activity.event(key)
    activity.observed(key, body.get("status") or {})


# -- the reconcile ------------------------------------------------------------------------------


@kopf.on.resume(*WORKERPOOLS)
@kopf.on.create(*WORKERPOOLS)
@kopf.on.update(*WORKERPOOLS, field="spec")
async def reconcile_pool(
    body: Any, namespace: str | None, name: str, memo: Any, **kwargs: Any
) -> None:
    runtime = _adopt(memo, kwargs)
    key = (in_namespace(namespace), name)
    entry = runtime.pools.get(key)
    if entry is None or entry.uid != body.get("metadata", {}).get("uid"):
        entry = runtime.pool_seen(key, body)
        schedule_timer.attach(runtime, key, entry)
    metrics.POOL_SYNCS.labels(trigger="spec").inc()
    problem = await timed_sync("WorkerPool", pool_call(runtime, key, entry, True), "spec")
    if problem is not None:
        raise kopf.PermanentError(problem)
