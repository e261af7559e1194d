"""The replica decision: how many workers a pool should run, as one pure function.

This is the seam for the autoscaler: it replaces ``decide`` (same inputs, same
result type) with the queue-driven policy of ARCHITECTURE.md "Scaling policy";
the handlers call nothing else to size a pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from workerfleet.operator import models, reasons
from workerfleet.worker.models import QueueStats, WorkerStats


@dataclass(frozen=True)
class ReplicaInputs:
    """Everything a replica decision may look at."""

    spec: models.WorkerPoolSpec
    current: int | None
    """The Deployment's spec.replicas now (None: no Deployment yet)."""
    queue: QueueStats | None
    """The pool's queue, or None when it could not be read."""
    workers: WorkerStats | None
    now: float
    """Monotonic seconds, for policies with time windows."""


@dataclass(frozen=True)
class ReplicaDecision:
    replicas: int
    reason: str
    """A ``reasons.REPLICAS_*`` constant."""


def decide(inputs: ReplicaInputs) -> ReplicaDecision:
    """For now: a `kubectl scale` override if present, else ``spec.replicas.min``."""
    replicas = inputs.spec.replicas
    if replicas.override is not None:
        return ReplicaDecision(replicas.override, reasons.REPLICAS_OVERRIDE)
    return ReplicaDecision(replicas.min, reasons.REPLICAS_MINIMUM)
