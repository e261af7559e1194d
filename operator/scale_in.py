"""Which pods a scale-in takes, so that the ReplicaSet deletes exactly drained, idle ones.

Lowering a Deployment's replicas lets its ReplicaSet pick the pods to delete, in
this order (``ActivePodsWithRanks`` in kube-controller-manager): unscheduled
before scheduled, Pending before Unknown before Running, not ready before ready,
then the lower ``controller.kubernetes.io/pod-deletion-cost`` first, then age and
restarts. The operator cannot change the first three, only the cost. So the
planner walks the pods in the ReplicaSet's order, group by group of equal rank
before the cost: in each group it can put the safe pods first (victims get the
lowest cost, busy pods the highest), but it cannot reach past a group that holds a
pod it must keep. What it cannot take now it holds, and says why.

Safe to take: a pod with no worker row whose container never started (Pending or
unscheduled: no worker, no job) and a pod whose live workers all hold no job (they are asked to
drain first, and a drained worker claims nothing). Never: a pod whose worker holds
a job, or a running pod with no live worker row yet (starting: it may claim any
moment) or any more (its worker died: the Monitor's business).

Pure: the pods come from the operator's pod index, the workers from the workers
table; :func:`settle` tells what became of a scale-in already under way.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from workerfleet.operator.views import PodView
from workerfleet.worker.models import PoolWorker

VICTIM_COST = -100
NEUTRAL_COST = 0
BUSY_COST = 100
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
# Pods the ReplicaSet no longer counts as its own replicas.
TERMINAL_PHASES = ("Succeeded", "Failed")

Kind = Literal["unstarted", "idle", "busy", "unregistered", "undrained"]
SAFE_KINDS = ("unstarted", "idle")


@dataclass(frozen=True)
class Candidate:
    pod: PodView
    kind: Kind
    worker_ids: tuple[str, ...]
    jobs: int
    drain_requested: bool

    @property
    def safe(self) -> bool:
        return self.kind in SAFE_KINDS

    @property
    def rank(self) -> tuple[int, int, int]:
        """The ReplicaSet's order before the deletion cost (lower goes first)."""
        assigned = 1 if self.pod.node_name else 0
        return (assigned, PHASE_RANK.get(self.pod.phase, 2), 1 if self.pod.ready else 0)

    @property
    def preference(self) -> tuple[int, int, float]:
        """Among safe pods of one rank: already drained, then never started, then newest."""
        created = self.pod.created_at.timestamp() if self.pod.created_at else 0.0
        return (0 if self.drain_requested else 1, 0 if self.kind == "unstarted" else 1, -created)


@dataclass(frozen=True)
class Plan:
    victims: tuple[Candidate, ...]
    """The pods to take, in the order the ReplicaSet will delete them."""
    costs: dict[str, int]
    """The deletion cost each active pod should carry before replicas go down."""
    held: int
    """How many of the workers asked to go must stay for now."""
    why_held: str | None

    @property
    def worker_ids(self) -> list[str]:
        return [worker_id for victim in self.victims for worker_id in victim.worker_ids]


def classify(pod: PodView, workers: Sequence[PoolWorker]) -> Candidate:
    """What a pod is to a scale-in, from its live worker rows."""
    ids = tuple(w.id for w in workers)
    jobs = sum(w.current_jobs for w in workers)
    asked = bool(workers) and all(w.drain_requested for w in workers)
    kind: Kind
    if jobs > 0:
        kind = "busy"
    elif workers:
        kind = "idle"
    elif not pod.node_name or pod.phase == "Pending":
        kind = "unstarted"  # no container yet: no worker, no job
    else:
        kind = "unregistered"
    return Candidate(pod, kind, ids, jobs, asked)


def candidates(pods: Iterable[PodView], workers: Iterable[PoolWorker]) -> list[Candidate]:
    by_pod: dict[str, list[PoolWorker]] = {}
    for worker in workers:
        if worker.pod is not None:
            by_pod.setdefault(worker.pod, []).append(worker)
    return [
        classify(pod, by_pod.get(pod.name, []))
        for pod in pods
        if not pod.deleting and pod.phase not in TERMINAL_PHASES
    ]


def plan(
    pods: Sequence[PodView],
    workers: Sequence[PoolWorker],
    remove: int,
    takeable: Collection[str] | None = None,
) -> Plan:
    """Up to ``remove`` pods the ReplicaSet will delete first once their costs are set.

    ``takeable`` limits the victims to these pods (those whose workers are drained
    by now); the others count as pods to keep.
    """
    active = candidates(pods, workers)
    if takeable is not None:
        active = [
            c if c.pod.name in takeable or not c.safe else dataclasses.replace(c, kind="undrained")
            for c in active
        ]
    if len({c.pod.template_hash for c in active}) > 1:
        return Plan((), _costs(active, ()), remove, "a rollout is in progress")
    ordered = sorted(active, key=lambda c: c.rank)
    victims: list[Candidate] = []
    blocker: Candidate | None = None
    for _, group in itertools.groupby(ordered, key=lambda c: c.rank):
        members = list(group)
        safe = sorted((c for c in members if c.safe), key=lambda c: c.preference)
        taken = safe[: remove - len(victims)]
        victims += taken
        if len(victims) == remove:
            break
        if len(taken) < len(members):
            blocker = next(c for c in members if not c.safe)
            break
    held = remove - len(victims)
    return Plan(tuple(victims), _costs(active, victims), held, _why(blocker, held))


def _costs(active: Sequence[Candidate], victims: Sequence[Candidate]) -> dict[str, int]:
    taken = {v.pod.name for v in victims}
    costs = {}
    for candidate in active:
        name = candidate.pod.name
        if name in taken:
            costs[name] = VICTIM_COST
        elif candidate.kind == "busy":
            costs[name] = BUSY_COST
        else:
            costs[name] = NEUTRAL_COST
    return costs


def _why(blocker: Candidate | None, held: int) -> str | None:
    if held == 0:
        return None
    if blocker is None:
        return "no other idle worker to take"
    readiness = "ready" if blocker.pod.ready else "not ready"
    what = {
        "busy": f"holds {blocker.jobs} jobs",
        "unregistered": "has no live worker row (starting, or its worker died)",
        "undrained": "was not asked to drain in time for this round",
    }.get(blocker.kind, blocker.kind)
    return (
        f"the ReplicaSet would delete pod {blocker.pod.name} ({readiness}) next, "
        f"and its worker {what}"
    )


# -- a scale-in under way -------------------------------------------------------------------------


@dataclass
class InFlight:
    """A scale-in whose Deployment patch is done: its victims should go, nothing else."""

    victims: dict[str, tuple[str, ...]]
    """pod -> the worker ids drained on it."""
    busy: dict[str, int]
    """pod -> jobs, for the pods that held jobs when replicas went down."""
    deadline: float
    gone: set[str] = field(default_factory=set)
    """Pods of this scale-in seen deleting or gone, victims or not."""


@dataclass(frozen=True)
class Settled:
    completed: list[str]
    """Victim pods that went since the last look."""
    interrupted_jobs: int
    """Jobs on busy pods that went since the last look (a pod a scale-in must not take)."""
    interrupted_pods: list[str]
    overdue: dict[str, tuple[str, ...]]
    """Victims still there at the deadline: pod -> worker ids to give back."""
    done: bool


def settle(in_flight: InFlight, pods: Sequence[PodView], now: float) -> Settled:
    """What happened to a scale-in since the last look (updates ``in_flight.gone``)."""
    present = {p.name for p in pods if not p.deleting}
    went = {name for name in (*in_flight.victims, *in_flight.busy) if name not in present}
    new = went - in_flight.gone
    in_flight.gone |= new
    completed = sorted(name for name in new if name in in_flight.victims)
    interrupted = sorted(name for name in new if name in in_flight.busy)
    remaining = {pod: ids for pod, ids in in_flight.victims.items() if pod not in in_flight.gone}
    overdue = remaining if now >= in_flight.deadline else {}
    return Settled(
        completed=completed,
        interrupted_jobs=sum(in_flight.busy[name] for name in interrupted),
        interrupted_pods=interrupted,
        overdue=overdue,
        done=not remaining or bool(overdue),
    )
