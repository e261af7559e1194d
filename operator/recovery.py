"""A Monitor's recovery of one database, scoped to the pools it recovers.

One pass per database and run: expired leases in their queues are rescued,
then dead workers of those pools reaped (their jobs released), both in one
transaction holding the database's recovery lock (``Repository.recover``):
another operator replica, another Monitor or ``workerfleet recover`` waits
for it and finds nothing it handled. Retention pruning follows, in committed
batches (``Repository.prune_finished``), also limited to those queues, and
the failure counts past their hour are deleted. With ``restartHungWorkers``
a pod of those pools is deleted when the reaped (silent) worker is the
incarnation it runs now (``incarnations.hung_pods``): a pod whose container
restarted runs a healthy new worker and is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workerfleet.durations import parse_duration
from workerfleet.operator import incarnations, inspector, metrics, models
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.models import MonitorTotals
from workerfleet.operator.runtime import Runtime
from workerfleet.operator.selection import PoolRef
from workerfleet.operator.views import PodView

# Each of status.totals as the recovery metric labels it and as a run's Event tells it.
TOTAL_WORDS: dict[str, tuple[str, str]] = {
    "stuck_jobs_rescued": ("rescued", "jobs rescued from expired leases"),
    "jobs_released": ("released", "jobs released from dead workers"),
    "jobs_dead_lettered": ("dead_lettered", "jobs dead-lettered"),
    "dead_workers_reaped": ("workers_reaped", "dead workers marked"),
    "pods_restarted": ("pods_restarted", "hung worker pods deleted"),
    "jobs_pruned": ("pruned", "finished jobs pruned"),
}


@dataclass(frozen=True)
class DatabaseScope:
    """What one Monitor recovers on one database."""

    namespace: str
    dsn: str
    pools: tuple[PoolRef, ...]

    @property
    def queues(self) -> list[str]:
        return sorted({pool.queue for pool in self.pools if pool.queue})

    @property
    def pool_keys(self) -> list[str]:
        return sorted(pool.key(self.namespace) for pool in self.pools)


async def recover_database(
    runtime: Runtime,
    spec: models.MonitorSpec,
    scope: DatabaseScope,
    pods_index: Mapping[Any, Any],
) -> MonitorTotals:
    """One recovery pass; raises QueueAccessError when the database fails us."""
    try:
        repository = await runtime.inspector.repository(scope.dsn)
        result = await repository.recover(
            spec.dead_worker_after_seconds,
            queues=scope.queues,
            pools=scope.pool_keys,
            grace_seconds=spec.stuck_job_after_seconds,
        )
        pruned = 0
        for state, age in (
            ("succeeded", spec.retention.succeeded),
            ("dead", spec.retention.dead),
            ("cancelled", spec.retention.cancelled),
        ):
            if age is not None:
                pruned += await repository.prune_finished(
                    parse_duration(age), [state], queues=scope.queues
                )
        await repository.prune_failure_counts()
    except QueueAccessError:
        raise
    except Exception as error:  # one database's trouble must not stop the others' recovery
        raise inspector.access_error(error, scope.dsn, "recovery") from None
    restarted = 0
    if spec.restart_hung_workers and result.reaped.worker_ids:
        restarted = await _restart_hung_pods(runtime, scope, result.reaped.worker_ids, pods_index)
    recovered = MonitorTotals(
        stuck_jobs_rescued=result.rescued.rescued,
        jobs_dead_lettered=result.rescued.dead + result.reaped.jobs_dead,
        dead_workers_reaped=result.reaped.workers,
        jobs_released=result.reaped.jobs_released,
        pods_restarted=restarted,
        jobs_pruned=pruned,
    )
    for name, (action, _) in TOTAL_WORDS.items():
        metrics.MONITOR_RECOVERED.labels(action=action).inc(getattr(recovered, name))
    return recovered


async def _restart_hung_pods(
    runtime: Runtime,
    scope: DatabaseScope,
    reaped: Sequence[str],
    pods_index: Mapping[Any, Any],
) -> int:
    """Delete the pods whose current incarnation is among the ``reaped`` workers; the uid
    precondition spares a new pod that took the same name."""
    try:
        repository = await runtime.inspector.repository(scope.dsn)
        rows = await incarnations.pool_workers(
            repository, scope.namespace, [pool.name for pool in scope.pools]
        )
    except Exception as error:
        raise inspector.access_error(error, scope.dsn, "recovery") from None
    lives = [
        pod.life
        for pool in scope.pools
        for pod in pods_index.get((scope.namespace, pool.name), ())
        if isinstance(pod, PodView) and pod.life is not None and not pod.deleting
    ]
    restarted = 0
    for pod in incarnations.hung_pods(reaped, lives, rows):
        if await runtime.kube.delete_pod(scope.namespace, pod.name, uid=pod.uid):
            restarted += 1
    return restarted


def describe_run(run: MonitorTotals) -> str | None:
    parts = [
        f"{count} {words}"
        for name, (_, words) in TOTAL_WORDS.items()
        if (count := getattr(run, name))
    ]
    return ", ".join(parts) if parts else None
