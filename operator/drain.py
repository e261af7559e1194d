"""The effects of a scale-in: drain the victims, set deletion costs, then let replicas go down.

    plan (scale_in.plan) -> drain the victims' workers (their rows 'draining': from
    then on the database refuses their claims) -> read the jobs they hold (a claim
    that committed before the drain shows now, exactly) -> re-plan without the
    ones that hold a job -> deletion costs on the pods (victims lowest, busy
    highest) -> wait until the watch shows the costs -> lower replicas by the
    victims taken.

Every wait is bounded; when a bound runs out the round is given up (its drains
taken back, counted and logged) and the next evaluation tries again. A scale-in
under way is followed by :func:`follow`: victims that went are counted as drains
completed, a busy pod that went counts its jobs as interrupted (goal: 0), victims
still there at the deadline get their drain taken back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from workerfleet.operator import metrics, models, reasons, scale_in
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.kube import ApiException, api_error_message
from workerfleet.operator.runtime import PoolScaling, PoolState, Runtime
from workerfleet.operator.views import DELETION_COST_ANNOTATION, PodView
from workerfleet.worker.connector import TRANSIENT_ERRORS
from workerfleet.worker.connector import describe_error as describe
from workerfleet.worker.repository import Repository

COSTS_VISIBLE_SECONDS = 10.0
COSTS_POLL_SECONDS = 0.05
SETTLE_SECONDS = 60.0
"""How long the victims of a scale-in may take to be deleted once replicas went down."""

log = logging.getLogger(__name__)


class PoolLike(Protocol):
    """What a scale-in needs of a pool's sync (``pool_sync.PoolCall``)."""

    @property
    def runtime(self) -> Runtime: ...
    @property
    def state(self) -> PoolState: ...
    @property
    def body(self) -> Any: ...
    @property
    def namespace(self) -> str: ...
    @property
    def pool_key(self) -> str: ...
    def pods(self) -> list[PodView]: ...


@dataclass(frozen=True)
class Shrink:
    replicas: int
    """What to ask the Deployment for: between the decision and the current count."""
    held: str | None
    """Why more workers stay than decided, for now."""


class DrainGivenUp(Exception):
    """A bounded wait of a scale-in ran out, or a call it needs failed; nothing was lowered."""


# What ends a round of scale-in (or a give-back) early: the next evaluation tries again.
# A database refusing a statement (one not migrated to 0007 yet) is one of them: the
# message says which, in the ScalingLimited condition.
GIVE_UP_ERRORS: tuple[type[BaseException], ...] = (
    DrainGivenUp,
    QueueAccessError,
    asyncpg.PostgresError,
    *TRANSIENT_ERRORS,
)


async def shrink(call: PoolLike, spec: models.WorkerPoolSpec, current: int, target: int) -> Shrink:
    """Drain idle workers for a scale-in from ``current`` to ``target`` (< current)."""
    state = call.state.scaling
    if state.in_flight is not None:
        return Shrink(current, "the previous scale-in's pods are still going")
    try:
        repository = await _repository(call)
        return await _shrink(call, repository, state, current, target)
    except GIVE_UP_ERRORS as error:
        why = str(error) if isinstance(error, DrainGivenUp | QueueAccessError) else describe(error)
        log.warning("scale-in given up for now", extra={"pool": call.pool_key, "why": why})
        return Shrink(current, f"scale-in given up for now: {why}")


async def _shrink(
    call: PoolLike, repository: Repository, state: PoolScaling, current: int, target: int
) -> Shrink:
    remove = current - target
    workers = await repository.pool_workers(call.pool_key, call.runtime.settings.dead_worker_after)
    first = scale_in.plan(call.pods(), workers, remove)
    if not first.victims:
        return Shrink(current, first.why_held)
    asked_before = {w.id for w in workers if w.drain_requested}
    marked = await repository.drain_workers(first.worker_ids)
    metrics.DRAINS.labels(outcome="started").inc(len(marked - asked_before))
    # Exact: every claim of a marked worker committed before the drain did.
    holding = await repository.running_jobs_of_workers(sorted(marked))
    workers = [
        dataclasses.replace(w, current_jobs=holding.get(w.id, 0)) if w.id in marked else w
        for w in workers
    ]
    final = scale_in.plan(call.pods(), workers, remove, takeable=_drained_pods(first, marked))
    taken = set(final.worker_ids)
    if holding:
        log.info(
            "drained workers had claimed a job in the race: they finish it, claim nothing "
            "more, and go at a later round",
            extra={"pool": call.pool_key, "workers": sorted(holding)},
        )
    state.left_draining |= set(holding)
    spare = sorted(marked - taken - set(holding))
    if spare:
        await _give_back(repository, spare, "cancelled")
    state.left_draining -= taken
    if not final.victims:
        return Shrink(current, final.why_held)
    try:
        await _set_costs(call, final.costs)
    except DrainGivenUp:
        await _give_back(repository, sorted(taken), "timed_out")
        raise
    log.info(
        "scale-in: drained workers go first",
        extra={
            "pool": call.pool_key,
            "pods": [v.pod.name for v in final.victims],
            "held": final.held,
            "why_held": final.why_held,
        },
    )
    state.in_flight = scale_in.InFlight(
        victims={v.pod.name: v.worker_ids for v in final.victims},
        busy={c.pod.name: c.jobs for c in scale_in.candidates(call.pods(), workers) if c.jobs},
        deadline=time.monotonic() + SETTLE_SECONDS,
    )
    return Shrink(current - len(final.victims), final.why_held)


def _drained_pods(plan: scale_in.Plan, marked: set[str]) -> set[str]:
    """Victims whose every worker is now drained (a pod with none never started)."""
    return {v.pod.name for v in plan.victims if set(v.worker_ids) <= marked}


async def _set_costs(call: PoolLike, costs: dict[str, int]) -> None:
    """Put the planned deletion costs on the pods and wait until the watch shows them: the
    ReplicaSet controller ranks pods from the same stream of pod updates."""
    pods = {p.name: p for p in call.pods()}
    changed = {
        name: cost
        for name, cost in costs.items()
        if name in pods and (pods[name].deletion_cost or 0) != cost
    }
    for name, cost in changed.items():
        try:
            await call.runtime.kube.annotate_pod(
                call.namespace, name, {DELETION_COST_ANNOTATION: str(cost)}
            )
        except ApiException as error:
            raise DrainGivenUp(f"pod {name}: {api_error_message(error)}") from None
    deadline = time.monotonic() + COSTS_VISIBLE_SECONDS
    while not _costs_visible(call.pods(), changed):
        if time.monotonic() >= deadline:
            raise DrainGivenUp(
                f"the pods' deletion costs did not show in the watch within "
                f"{COSTS_VISIBLE_SECONDS:g}s"
            )
        await asyncio.sleep(COSTS_POLL_SECONDS)


def _costs_visible(pods: list[PodView], costs: dict[str, int]) -> bool:
    seen = {p.name: p for p in pods}
    return all(
        name not in seen or seen[name].deleting or seen[name].deletion_cost == cost
        for name, cost in costs.items()
    )


async def _give_back(repository: Repository, worker_ids: list[str], outcome: str) -> None:
    back = await repository.undrain_workers(worker_ids)
    if back:
        metrics.DRAINS.labels(outcome=outcome).inc(len(back))


async def _repository(call: PoolLike) -> Repository:
    dsn = call.state.scaling.dsn
    if dsn is None:
        raise DrainGivenUp("the queue database is not known yet")
    return await call.runtime.inspector.repository(dsn)


# -- after the Deployment patch ------------------------------------------------------------------


async def follow(call: PoolLike, now: float) -> None:
    """Count what became of the scale-in under way; give back overdue victims' drains."""
    state = call.state.scaling
    if state.in_flight is None:
        return
    settled = scale_in.settle(state.in_flight, call.pods(), now)
    if settled.completed:
        metrics.DRAINS.labels(outcome="completed").inc(len(settled.completed))
    if settled.interrupted_jobs:
        metrics.SCALE_IN_INTERRUPTED_JOBS.inc(settled.interrupted_jobs)
        log.warning(
            "a scale-in took pods that held jobs",
            extra={"pool": call.pool_key, "pods": settled.interrupted_pods},
        )
    if settled.overdue:
        ids = sorted(i for worker_ids in settled.overdue.values() for i in worker_ids)
        log.warning(
            "scale-in victims were not deleted in time; their drain is taken back",
            extra={"pool": call.pool_key, "pods": sorted(settled.overdue)},
        )
        post(
            call.body,
            "Warning",
            reasons.EVENT_DRAIN_TIMED_OUT,
            f"pods {', '.join(sorted(settled.overdue))} were drained for a scale-in but not "
            f"deleted within {SETTLE_SECONDS:g}s; they run again",
        )
        try:
            await _give_back(await _repository(call), ids, "timed_out")
        except GIVE_UP_ERRORS:
            state.left_draining |= set(ids)  # given back at the next chance
    if settled.done:
        state.in_flight = None


async def give_back_unneeded(call: PoolLike) -> None:
    """No scale-in wanted: workers still draining at our request go back to work.

    Also, once per operator process, those a previous process left draining.
    """
    state = call.state.scaling
    if state.in_flight is not None or (state.drains_checked and not state.left_draining):
        return
    if not state.read_queue:
        return  # the database is not answering: not worth a connection attempt per sync
    try:
        repository = await _repository(call)
        ids = set(state.left_draining)
        if not state.drains_checked:
            live = {p.name for p in call.pods() if not p.deleting}
            workers = await repository.pool_workers(
                call.pool_key, call.runtime.settings.dead_worker_after
            )
            ids |= {w.id for w in workers if w.drain_requested and w.pod in live}
        await _give_back(repository, sorted(ids), "cancelled")
    except GIVE_UP_ERRORS as error:
        log.debug("drains not given back yet", extra={"pool": call.pool_key, "error": str(error)})
        return
    state.drains_checked = True
    state.left_draining.clear()
