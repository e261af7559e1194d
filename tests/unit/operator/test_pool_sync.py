"""The pure parts of a pool's sync: what the replica decision is given."""

from __future__ import annotations

from workerfleet.operator import models
from workerfleet.operator.pool_sync import Parsed, decide_replicas, replica_inputs
from workerfleet.operator.rollup import QueueProblem, QueueReading
from workerfleet.operator.views import DeploymentView
from workerfleet.worker.models import QueueStats, WorkerStats

POOL = "mail/emails"
STATS = QueueStats("emails", 3, 0, 1, 0, 0, 0, 2.0, 0)
WORKERS = WorkerStats(POOL, 1, 1, 0, 0, 0)
LIVE = DeploymentView("emails", "u", 1, "h", 4, 4, 4, 1)


def test_the_policy_sees_none_only_when_the_queue_could_not_be_read(
    spec: models.WorkerPoolSpec,
) -> None:
    read = replica_inputs(POOL, spec, QueueReading(STATS, WORKERS), 2, 7.0)
    assert (read.queue, read.workers, read.current, read.now) == (STATS, WORKERS, 2, 7.0)
    empty = replica_inputs(POOL, spec, QueueReading(None, None), None, 7.0)
    assert empty.queue is not None
    assert (empty.queue.queue, empty.queue.pending, empty.queue.running) == ("emails", 0, 0)
    assert empty.workers == WorkerStats(POOL, 0, 0, 0, 0, 0)
    unreadable = replica_inputs(POOL, spec, QueueProblem("DatabaseUnreachable", "down"), 2, 7.0)
    assert (unreadable.queue, unreadable.workers) == (None, None)


def test_an_invalid_or_paused_spec_keeps_the_live_replicas(spec: models.WorkerPoolSpec) -> None:
    reading = QueueReading(STATS, WORKERS)
    assert decide_replicas(POOL, Parsed(None, "spec.x: bad", paused=False), reading, LIVE) == 4
    assert decide_replicas(POOL, Parsed(spec, None, paused=True), reading, LIVE) == 4
    assert decide_replicas(POOL, Parsed(spec, None, paused=True), reading, None) is None
    assert decide_replicas(POOL, Parsed(spec, None, paused=False), reading, LIVE) == 1  # min
