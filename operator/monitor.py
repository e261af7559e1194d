"""The Monitor reconciler: kopf glue around recovery, the incident rules and notifications.

Monitors enter and leave the operator's scheduler with their watch events (no kopf
timer per Monitor: a deleted one is forgotten at once). Every ``spec.interval``,
and at once when its spec changes, a Monitor

1. finds the WorkerPools its selector matches in its namespace, and of those
   the ones it recovers (the first Monitor by name recovers a pool that
   several select, see ``selection``);
2. per database: runs one recovery pass for its pools (``recovery``), then
   reads the inspector's snapshot, the one stats query per database that the
   pools' own ticks share, for the figures its rules need;
3. evaluates its rules into incidents (``incidents``, pure), persisted in
   ``status.incidents`` so an operator restart neither fires nor forgets one;
4. puts a notification per incident fired, resolved or repeated into its
   webhook outbox (``notifications``), which delivers in the background;
5. writes its status (totals, incidents, FIRING, delivery, the Ready and
   NotificationsDelivered conditions) and posts Events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic

from workerfleet.operator import conditions, incidents, metrics, models, reasons, recovery
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.handlers import keep_indexes
from workerfleet.operator.incidents import Change, Evaluation, Incident, PoolFacts
from workerfleet.operator.inspector import Snapshot
from workerfleet.operator.kopf_glue import MONITORS, WORKERPOOLS, in_namespace, post, runtime_of
from workerfleet.operator.models import MonitorTotals
from workerfleet.operator.notifications import report, target
from workerfleet.operator.notifications.outbox import DeliveryRecord
from workerfleet.operator.notifications.payloads import Notification
from workerfleet.operator.notifications.target import WebhookConfigError
from workerfleet.operator.recovery import DatabaseScope
from workerfleet.operator.runtime import MONITOR, MonitorState, Runtime
from workerfleet.operator.selection import MonitorRef, PoolRef, pools_to_recover, selected_pools
from workerfleet.operator.validation import describe_validation_error
from workerfleet.worker.models import QueueStats, WorkerStats

logger = logging.getLogger(__name__)


def outbox_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@kopf.index(*WORKERPOOLS)
async def pool_refs(
    namespace: str | None,
    name: str,
    uid: str,
    labels: Mapping[str, str],
    spec: Mapping[str, Any],
    **_: Any,
) -> dict[str, PoolRef]:
    return {in_namespace(namespace): PoolRef.from_spec(name, uid, labels, spec)}


@kopf.index(*MONITORS)
async def monitor_refs(
    namespace: str | None, name: str, spec: Mapping[str, Any], **_: Any
) -> dict[str, MonitorRef] | None:
    """The namespace's Monitors that can run: who recovers a pool several of them select."""
    try:
        parsed = models.MonitorSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return None
    return {in_namespace(namespace): MonitorRef(name, parsed.selector)}


@kopf.on.event(*MONITORS)
async def monitor_event(
    event: Mapping[str, Any], namespace: str | None, name: str, memo: Any, **kwargs: Any
) -> None:
    """Which Monitors exist and their latest bodies: a new one or a new spec runs at once,
    a deleted one never again."""
    runtime = runtime_of(memo)
    keep_indexes(runtime, kwargs)
    runtime.monitor_run = run_due
    key = f"monitor:{namespace}/{name}"
    monitor = (in_namespace(namespace), name)
    if event.get("type") == "DELETED":
        runtime.forget_monitor(monitor)
        runtime.activity.gone(key)
        await runtime.notifier.forget(outbox_key(*monitor))
        metrics.record_firing(*monitor, set())
    else:
        runtime.monitor_seen(monitor, event.get("object") or {})
        runtime.activity.event(key)


# -- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What one run's recovery and stats reads found."""

    totals: MonitorTotals
    problems: list[str]
    facts: list[PoolFacts]


def _unknown(pool: PoolRef) -> PoolFacts:
    return PoolFacts(pool.name, None, None, pool.concurrency, pool.ceiling)


def pool_facts(pool: PoolRef, namespace: str, snapshot: Snapshot) -> PoolFacts:
    """A pool's figures from its database's snapshot; no rows yet means all zero."""
    queue = snapshot.queues.get(pool.queue) or QueueStats(
        queue=pool.queue,
        pending=0,
        scheduled=0,
        running=0,
        succeeded=0,
        dead=0,
        cancelled=0,
        oldest_pending_seconds=None,
        finished_last_minute=0,
    )
    key = pool.key(namespace)
    workers = snapshot.workers.get(key) or WorkerStats(key, 0, 0, 0, 0, 0)
    return PoolFacts(pool.name, queue, workers, pool.concurrency, pool.ceiling)


async def recover_and_observe(
    runtime: Runtime,
    namespace: str,
    spec: models.MonitorSpec,
    pools: Sequence[PoolRef],
    recovered: Sequence[PoolRef],
    pods_index: Mapping[Any, Any],
) -> Observed:
    """Recovery for ``recovered``, then the stats of every pool of ``pools``, per database."""
    problems: list[str] = []
    facts: list[PoolFacts] = []
    by_secret: dict[tuple[str, str], list[PoolRef]] = {}
    for pool in pools:
        by_secret.setdefault((pool.secret_name, pool.secret_key), []).append(pool)
    by_dsn: dict[str, list[PoolRef]] = {}
    for (secret_name, key), group in by_secret.items():
        try:
            dsn = await runtime.secrets.dsn(namespace, secret_name, key)
        except QueueAccessError as error:
            problems.append(f"pools {', '.join(p.name for p in group)}: {error.message}")
            facts.extend(_unknown(p) for p in group)
            continue
        by_dsn.setdefault(dsn, []).extend(group)
    ours = {p.name for p in recovered}
    totals = MonitorTotals()
    for dsn, group in by_dsn.items():
        names = ", ".join(p.name for p in group)
        mine = tuple(p for p in group if p.name in ours)
        failed = False
        if mine:
            scope = DatabaseScope(namespace, dsn, mine)
            try:
                totals = totals.plus(
                    await recovery.recover_database(runtime, spec, scope, pods_index)
                )
            except QueueAccessError as error:
                problems.append(f"pools {names}: {error.message}")
                failed = True
        try:
            snapshot = await runtime.inspector.snapshot(dsn)
        except QueueAccessError as error:
            if not failed:
                problems.append(f"pools {names}: {error.message}")
            facts.extend(_unknown(p) for p in group)
            continue
        facts.extend(pool_facts(p, namespace, snapshot) for p in group)
    return Observed(totals, problems, facts)


def notification_of(namespace: str, monitor: str, change: Change) -> Notification:
    incident = change.incident
    return Notification(
        namespace=namespace,
        monitor=monitor,
        rule=incident.rule,
        pool=incident.pool,
        state="resolved" if incident.state == "resolved" else "firing",
        since=incident.since,
        message=incident.message,
        fired_at=incident.fired_at,
        resolved_at=incident.resolved_at,
        repeat=change.kind == "repeated",
    )


async def notify(
    runtime: Runtime,
    namespace: str,
    name: str,
    webhook: models.Webhook | None,
    changes: Sequence[Change],
) -> tuple[WebhookConfigError | None, DeliveryRecord, int]:
    """Queue a notification per change; never waits for delivery.

    Returns the webhook's configuration problem (if any), what the outbox
    delivered or gave up since the last run, and how many still wait.
    """
    key = outbox_key(namespace, name)
    if webhook is None:
        await runtime.notifier.forget(key)
        return None, DeliveryRecord(), 0
    outbox = runtime.notifier.outbox(key)
    problem = None
    try:
        outbox.configure(await target.resolve(runtime.secrets, namespace, webhook))
    except WebhookConfigError as error:
        problem = error
        outbox.configure(None)  # hold what is queued until the Secret is fixed
    for change in changes:
        outbox.put(notification_of(namespace, name, change))
    return problem, outbox.take_record(), outbox.pending


def previous_incidents(state: MonitorState, status: Mapping[str, Any]) -> list[Incident]:
    """The incidents of the last run: this process's own write unless the stored status
    is newer (written by another operator replica meanwhile)."""
    stored_run = status.get("lastRun")
    if state.incidents is not None and (
        stored_run is None or state.written_last_run is None or stored_run <= state.written_last_run
    ):
        return incidents.from_status(state.incidents)
    return incidents.from_status(status.get("incidents"))


def ready_condition(
    pools: Sequence[PoolRef], problems: Sequence[str], elsewhere: Mapping[str, str]
) -> conditions.ConditionUpdate:
    if problems:
        return conditions.ConditionUpdate(
            reasons.READY, "False", reasons.RUN_FAILED, "; ".join(problems)[:1000]
        )
    if not pools:
        return conditions.ConditionUpdate(
            reasons.READY, "True", reasons.NO_POOLS_SELECTED, "the selector matches no WorkerPool"
        )
    message = f"recovery ran for {len(pools) - len(elsewhere)} pools"
    if elsewhere:
        others = ", ".join(f"{pool} by {owner}" for pool, owner in sorted(elsewhere.items()))
        message += f"; recovered by another Monitor (the first by name): {others}"
    return conditions.ConditionUpdate(reasons.READY, "True", reasons.RAN, message[:1000])


def monitor_status(
    previous: Mapping[str, Any],
    *,
    generation: int | None,
    pools: Sequence[PoolRef],
    run: MonitorTotals,
    problems: Sequence[str],
    now: datetime,
    evaluation: Evaluation | None = None,
    delivery: Mapping[str, Any] | None = None,
    notifications: conditions.ConditionUpdate | None = None,
    elsewhere: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Monitor's status after a run (pure)."""
    totals = MonitorTotals.model_validate(dict(previous.get("totals") or {})).plus(run)
    updates = [ready_condition(pools, problems, elsewhere or {})]
    if notifications is not None:
        updates.append(notifications)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "lastRun": conditions.rfc3339(now),
        "pools": len(pools),
        "poolNames": [p.name for p in pools][: models.MAX_LIST_ITEMS],
        "recovered": totals.recovered,
        "totals": totals.model_dump(by_alias=True),
        "conditions": conditions.merge_conditions(
            previous.get("conditions"), updates, generation=generation, now=now
        ),
    }
    if evaluation is not None:
        status["incidents"] = [incidents.to_status(i) for i in evaluation.incidents]
        status["firing"] = len(evaluation.firing)
    if delivery is not None:
        status["delivery"] = dict(delivery)
    return status


def pool_reference(namespace: str, pool: PoolRef) -> dict[str, Any]:
    """Enough of a WorkerPool for an Event about it."""
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.WORKERPOOL_KIND,
        "metadata": {"name": pool.name, "namespace": namespace, "uid": pool.uid},
    }


def post_incident_events(
    body: Any, namespace: str, changes: Sequence[Change], pools: Mapping[str, PoolRef]
) -> None:
    """An Event on the Monitor and on the WorkerPool per incident fired or resolved."""
    monitor = body.get("metadata", {}).get("name", "")
    for change in changes:
        if change.kind == "repeated":
            continue
        incident = change.incident
        kind, reason = (
            ("Warning", reasons.EVENT_INCIDENT_FIRING)
            if change.kind == "fired"
            else ("Normal", reasons.EVENT_INCIDENT_RESOLVED)
        )
        post(body, kind, reason, f"{incident.rule} on {incident.pool}: {incident.message}")
        pool = pools.get(incident.pool)
        if pool is not None and pool.uid:
            message = f"{incident.rule} (Monitor {monitor}): {incident.message}"
            post(pool_reference(namespace, pool), kind, reason, message)


def log_changes(namespace: str, monitor: str, changes: Sequence[Change]) -> None:
    """A log line per incident fired (WARNING, easy to filter) or resolved (INFO)."""
    for change in changes:
        incident = change.incident
        level = logging.INFO if change.kind == "resolved" else logging.WARNING
        logger.log(
            level,
            "incident %s: %s on %s/%s (Monitor %s): %s",
            change.kind,
            incident.rule,
            namespace,
            incident.pool,
            monitor,
            incident.message,
        )


async def run_due(runtime: Runtime, key: tuple[str, str]) -> None:
    """The Monitor's interval is due (or its spec changed): run it, then set its next time."""
    entry = runtime.monitors.get(key)
    if entry is None:
        return
    namespace, name = key
    state, body = entry.state, entry.body
    previous = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    try:
        spec = models.MonitorSpec.model_validate(dict(body.get("spec") or {}))
    except pydantic.ValidationError as error:
        message = describe_validation_error(error)
        updated = conditions.merge_conditions(
            previous.get("conditions"),
            [conditions.ConditionUpdate(reasons.READY, "False", reasons.INVALID_SPEC, message)],
            generation=generation,
            now=datetime.now(UTC),
        )
        await write_status(runtime, key, {"conditions": updated})
        logger.warning("monitor %s/%s has an invalid spec: %s", namespace, name, message)
        return  # runs again when the spec changes
    async with state.lock:
        started = time.monotonic()
        state.last_run = started
        ok = False
        try:
            ok = await run_monitor(
                runtime,
                state,
                body,
                namespace,
                name,
                spec,
                runtime.indexes.pool_refs,
                runtime.indexes.monitor_refs,
                runtime.indexes.pods,
            )
        finally:
            metrics.record_reconcile("Monitor", "ok" if ok else "error", time.monotonic() - started)
            if runtime.monitors.get(key) is entry:
                runtime.scheduler.set((MONITOR, key), started + spec.interval_seconds)


async def write_status(runtime: Runtime, key: tuple[str, str], status: Mapping[str, Any]) -> bool:
    """Patch the Monitor's status; False when it is gone."""
    stored = await runtime.kube.patch_status(models.MONITOR_PLURAL, *key, status)
    metrics.STATUS_WRITES.labels(kind=models.MONITOR_KIND).inc()
    return stored is not None


async def run_monitor(
    runtime: Runtime,
    state: MonitorState,
    body: Any,
    namespace: str,
    name: str,
    spec: models.MonitorSpec,
    pool_index: Mapping[Any, Any],
    monitor_index: Mapping[Any, Any],
    pods_index: Mapping[Any, Any],
) -> bool:
    """One run; False when a database or Secret could not be used."""
    previous = body.get("status") or {}
    all_pools = {p.name: p for p in pool_index.get(namespace, ()) if isinstance(p, PoolRef)}
    pools = selected_pools(spec.selector, list(all_pools.values()))
    others = [m for m in monitor_index.get(namespace, ()) if isinstance(m, MonitorRef)]
    recovered, elsewhere = pools_to_recover(MonitorRef(name, spec.selector), pools, others)
    observed = await recover_and_observe(runtime, namespace, spec, pools, recovered, pods_index)
    now = datetime.now(UTC)
    evaluation = incidents.evaluate(
        spec.rules,
        observed.facts,
        all_pools.keys(),
        previous_incidents(state, previous),
        now,
        spec.alerts.repeat_seconds,
    )
    problem, record, pending = await notify(
        runtime, namespace, name, spec.alerts.webhook, evaluation.changes
    )
    delivery = report.delivery_status(previous.get("delivery"), record, pending)
    status = monitor_status(
        previous,
        generation=body.get("metadata", {}).get("generation"),
        pools=pools,
        run=observed.totals,
        problems=observed.problems,
        now=now,
        evaluation=evaluation,
        delivery=delivery,
        notifications=report.delivery_condition(spec.alerts.webhook, problem, delivery),
        elsewhere=elsewhere,
    )
    await write_status(runtime, (namespace, name), status)
    state.incidents, state.written_last_run = status["incidents"], status["lastRun"]
    metrics.record_firing(namespace, name, {i.key for i in evaluation.firing})
    log_changes(namespace, name, evaluation.changes)
    summary = recovery.describe_run(observed.totals)
    if spec.alerts.events:
        if summary is not None:
            post(body, "Normal", reasons.EVENT_RECOVERY, summary)
        post_incident_events(body, namespace, evaluation.changes, all_pools)
    for change in conditions.transitions(previous.get("conditions"), status["conditions"]):
        if change.after == "False":
            post(body, "Warning", change.reason, change.message)
    logger.debug("monitor %s/%s ran: %s", namespace, name, summary or "nothing to recover")
    return not observed.problems
