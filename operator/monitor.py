"""The Monitor reconciler: the queue's recovery primitives, run on the Monitor's interval.

Every ``spec.interval`` the Monitor finds the WorkerPools its selector matches
(in its own namespace), and for each database they use: puts jobs whose lease
expired back to pending (or dead when out of attempts), marks workers whose
heartbeat is older than ``spec.deadWorkerAfter`` dead and releases their jobs,
optionally deletes the pods that still run those hung workers (keyed on the
incarnation, ``incarnations.py``), and prunes finished jobs per
``spec.retention``. The figures add up in ``status.totals``.

Alert rules and incidents (``spec.rules``, ``spec.alerts``) are declared in the
API but not evaluated here; ``status.firing`` stays unset until they are.
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

from workerfleet.durations import parse_duration
from workerfleet.operator import conditions, incarnations, inspector, metrics, models, reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.kopf_glue import (
    MONITORS,
    NO_INDEX,
    WORKERPOOLS,
    in_namespace,
    post,
    runtime_of,
)
from workerfleet.operator.models import MonitorTotals
from workerfleet.operator.runtime import MonitorState, Runtime
from workerfleet.operator.validation import describe_validation_error
from workerfleet.operator.views import PodView

MONITOR_TICK_SECONDS = 5.0
# Each of status.totals as the recovery metric labels it and as a run's Event tells it.
TOTAL_WORDS: dict[str, tuple[str, str]] = {
    "stuck_jobs_rescued": ("rescued", "jobs rescued from expired leases"),
    "jobs_released": ("released", "jobs released from dead workers"),
    "jobs_dead_lettered": ("dead_lettered", "jobs dead-lettered"),
    "dead_workers_reaped": ("workers_reaped", "dead workers marked"),
    "pods_restarted": ("pods_restarted", "hung worker pods deleted"),
    "jobs_pruned": ("pruned", "finished jobs pruned"),
}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolRef:
    """What a Monitor needs to know about a WorkerPool."""

    name: str
    labels: Mapping[str, str]
    secret_name: str
    secret_key: str


def selector_matches(selector: models.LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        matched = {
            "In": present and value in requirement.values,
            "NotIn": not present or value not in requirement.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[requirement.operator]
        if not matched:
            return False
    return True


def selected_pools(selector: models.LabelSelector, pools: Sequence[PoolRef]) -> list[PoolRef]:
    return sorted((p for p in pools if selector_matches(selector, p.labels)), key=lambda p: p.name)


def monitor_state(memo: Any) -> MonitorState:
    state = memo.get("monitor_state")
    if state is None:
        state = memo["monitor_state"] = MonitorState()
    return state  # type: ignore[no-any-return]


@kopf.index(*WORKERPOOLS)
def pool_refs(
    namespace: str | None, name: str, labels: Mapping[str, str], spec: Mapping[str, Any], **_: Any
) -> dict[str, PoolRef]:
    secret = (spec.get("database") or {}).get("secretRef") or {}
    return {
        in_namespace(namespace): PoolRef(
            name=name,
            labels=dict(labels),
            secret_name=str(secret.get("name", "")),
            secret_key=str(secret.get("key", "dsn")),
        )
    }


@kopf.on.event(*MONITORS)
def monitor_event(
    event: Mapping[str, Any], namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    activity = runtime_of(memo).activity
    key = f"monitor:{namespace}/{name}"
    if event.get("type") == "DELETED":
        activity.gone(key)
    else:
        activity.event(key)


async def run_recovery(
    memo: Any,
    namespace: str,
    spec: models.MonitorSpec,
    pools: Sequence[PoolRef],
    pods_index: Mapping[Any, Any],
) -> tuple[MonitorTotals, list[str]]:
    """One run over every database of ``pools``; returns the totals and problems seen."""
    runtime = runtime_of(memo)
    problems: list[str] = []
    by_secret: dict[tuple[str, str], list[str]] = {}
    for pool in pools:
        by_secret.setdefault((pool.secret_name, pool.secret_key), []).append(pool.name)
    dsns: dict[str, list[str]] = {}
    for (secret_name, key), names in by_secret.items():
        try:
            dsn = await runtime.secrets.dsn(namespace, secret_name, key)
        except QueueAccessError as error:
            problems.append(f"pools {', '.join(names)}: {error.message}")
            continue
        dsns.setdefault(dsn, []).extend(names)
    totals = MonitorTotals()
    for dsn, names in dsns.items():
        try:
            totals = totals.plus(
                await _recover_database(runtime, namespace, spec, dsn, names, pods_index)
            )
        except QueueAccessError as error:
            problems.append(f"pools {', '.join(names)}: {error.message}")
    return totals, problems


async def _recover_database(
    runtime: Runtime,
    namespace: str,
    spec: models.MonitorSpec,
    dsn: str,
    pool_names: Sequence[str],
    pods_index: Mapping[Any, Any],
) -> MonitorTotals:
    try:
        repository = await runtime.inspector.repository(dsn)
        rescue = await repository.rescue_expired_leases()
        reap = await repository.reap_dead_workers(spec.dead_worker_after_seconds)
        hung = spec.restart_hung_workers and bool(reap.worker_ids)
        workers = await incarnations.pool_workers(repository, namespace, pool_names) if hung else []
        pruned = 0
        for state, age in (
            ("succeeded", spec.retention.succeeded),
            ("dead", spec.retention.dead),
            ("cancelled", spec.retention.cancelled),
        ):
            if age is not None:
                pruned += await repository.prune_finished(parse_duration(age), [state])
    except QueueAccessError:
        raise
    except Exception as error:  # one database's trouble must not stop the others' recovery
        raise inspector.access_error(error, dsn, "recovery") from None
    restarted = 0
    # Keyed on the incarnation each pod runs now, never on a pod name alone.
    lives = [
        pod.life
        for pool in pool_names
        for pod in pods_index.get((namespace, pool), ())
        if isinstance(pod, PodView) and pod.life is not None and not pod.deleting
    ]
    for pod in incarnations.hung_pods(reap.worker_ids, lives, workers):
        if await runtime.kube.delete_pod(namespace, pod.name, uid=pod.uid):
            restarted += 1
    recovered = MonitorTotals(
        stuck_jobs_rescued=rescue.rescued,
        jobs_dead_lettered=rescue.dead + reap.jobs_dead,
        dead_workers_reaped=reap.workers,
        jobs_released=reap.jobs_released,
        pods_restarted=restarted,
        jobs_pruned=pruned,
    )
    for name, (action, _) in TOTAL_WORDS.items():
        metrics.MONITOR_RECOVERED.labels(action=action).inc(getattr(recovered, name))
    return recovered


def describe_run(run: MonitorTotals) -> str | None:
    parts = [
        f"{count} {words}"
        for name, (_, words) in TOTAL_WORDS.items()
        if (count := getattr(run, name))
    ]
    return ", ".join(parts) if parts else None


def monitor_status(
    previous: Mapping[str, Any],
    *,
    generation: int | None,
    pools: Sequence[PoolRef],
    run: MonitorTotals,
    problems: Sequence[str],
    now: datetime,
) -> dict[str, Any]:
    """The Monitor's status after a run (pure)."""
    totals = MonitorTotals.model_validate(dict(previous.get("totals") or {})).plus(run)
    if problems:
        update = conditions.ConditionUpdate(
            reasons.READY, "False", reasons.RUN_FAILED, "; ".join(problems)[:1000]
        )
    elif not pools:
        update = conditions.ConditionUpdate(
            reasons.READY, "True", reasons.NO_POOLS_SELECTED, "the selector matches no WorkerPool"
        )
    else:
        update = conditions.ConditionUpdate(
            reasons.READY, "True", reasons.RAN, f"recovery ran for {len(pools)} pools"
        )
    return {
        "observedGeneration": generation,
        "lastRun": conditions.rfc3339(now),
        "pools": len(pools),
        "poolNames": [p.name for p in pools][: models.MAX_LIST_ITEMS],
        "recovered": totals.recovered,
        "totals": totals.model_dump(by_alias=True),
        "conditions": conditions.merge_conditions(
            previous.get("conditions"), [update], generation=generation, now=now
        ),
    }


@kopf.timer(*MONITORS, interval=MONITOR_TICK_SECONDS, sharp=True)
async def monitor_tick(
    memo: Any,
    body: Any,
    patch: Any,
    namespace: str | None,
    name: str,
    pool_refs: Mapping[Any, Any] = NO_INDEX,
    worker_pods: Mapping[Any, Any] = NO_INDEX,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    runtime.activity.tick()
    state = monitor_state(memo)
    previous = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    try:
        spec = models.MonitorSpec.model_validate(dict(body.get("spec") or {}))
    except pydantic.ValidationError as error:
        message = describe_validation_error(error)
        patch.status["conditions"] = conditions.merge_conditions(
            previous.get("conditions"),
            [conditions.ConditionUpdate(reasons.READY, "False", reasons.INVALID_SPEC, message)],
            generation=generation,
            now=datetime.now(UTC),
        )
        raise kopf.PermanentError(message) from None
    now = time.monotonic()
    async with state.lock:
        if state.last_run is not None and now - state.last_run < spec.interval_seconds:
            return
        state.last_run = now
        started = time.monotonic()
        where = in_namespace(namespace)
        pools = selected_pools(spec.selector, [p for p in pool_refs.get(where, ())])
        run, problems = await run_recovery(memo, where, spec, pools, worker_pods)
        status = monitor_status(
            previous,
            generation=generation,
            pools=pools,
            run=run,
            problems=problems,
            now=datetime.now(UTC),
        )
        patch.status.update(status)
        summary = describe_run(run)
        if summary is not None and spec.alerts.events:
            post(body, "Normal", reasons.EVENT_RECOVERY, summary)
        for change in conditions.transitions(previous.get("conditions"), status["conditions"]):
            if change.after == "False":
                post(body, "Warning", change.reason, change.message)
        metrics.record_reconcile(
            "Monitor", "error" if problems else "ok", time.monotonic() - started
        )
        logger.debug("monitor %s/%s ran: %s", namespace, name, summary or "nothing to recover")
