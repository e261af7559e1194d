"""The pure parts of a pool's sync: what the scaling policy is given, and when it decides."""

from __future__ import annotations

from dataclasses import replace

from workerfleet.operator import models, reasons
from workerfleet.operator.handlers import sync_trigger
from workerfleet.operator.pool_sync import (
    Parsed,
    decide_replicas,
    evaluation_due,
    scaling_inputs,
)
from workerfleet.operator.rollup import QueueProblem, QueueReading
from workerfleet.operator.runtime import PoolScaling
from workerfleet.operator.scaling import Decision, History
from workerfleet.operator.triggers import Work
from workerfleet.operator.views import DeploymentView
from workerfleet.worker.models import QueueStats, WorkerStats

POOL = "mail/emails"
STATS = QueueStats("emails", 3, 0, 1, 0, 0, 0, 2.0, 0)
WORKERS = WorkerStats(POOL, 1, 1, 0, 0, 0)
LIVE = DeploymentView("emails", "u", 1, "h", 4, 4, 4, 1)
DOWN = QueueProblem("DatabaseUnreachable", "down")


def test_the_policy_sees_none_only_when_the_queue_could_not_be_read(
    spec: models.WorkerPoolSpec,
) -> None:
    read = scaling_inputs(POOL, spec, QueueReading(STATS, WORKERS), 2, History(), 7.0)
    assert (read.queue, read.workers, read.current, read.now) == (STATS, WORKERS, 2, 7.0)
    empty = scaling_inputs(POOL, spec, QueueReading(None, None), None, History(), 7.0)
    assert empty.queue is not None
    assert (empty.queue.queue, empty.queue.pending, empty.queue.running) == ("emails", 0, 0)
    assert empty.workers == WorkerStats(POOL, 0, 0, 0, 0, 0)
    unreadable = scaling_inputs(POOL, spec, DOWN, 2, History(), 7.0)
    assert (unreadable.queue, unreadable.workers) == (None, None)


def test_an_invalid_or_paused_spec_keeps_the_live_replicas_and_forgets_the_window(
    spec: models.WorkerPoolSpec,
) -> None:
    reading = QueueReading(STATS, WORKERS)
    state = PoolScaling()
    decided = decide_replicas(
        state, POOL, Parsed(spec, None, paused=False), reading, LIVE, "spec", 1
    )
    assert state.history.started
    invalid = decide_replicas(
        state, POOL, Parsed(None, "spec.x: bad", False), reading, LIVE, "poll", 2
    )
    assert (invalid.replicas, invalid.report.invalid, invalid.report.decision) == (4, True, None)
    assert not state.history.started
    assert state.evaluated_at is None
    paused = decide_replicas(state, POOL, Parsed(spec, None, paused=True), reading, None, "poll", 3)
    assert (paused.replicas, paused.report.paused) == (None, True)
    # The first decision of a window never shrinks: the live 4 stays.
    assert (decided.replicas, decided.report.decision is not None) == (4, True)


def test_a_status_refresh_reuses_the_decision_until_the_poll_interval(
    spec: models.WorkerPoolSpec,
) -> None:
    state = PoolScaling()
    reading = QueueReading(STATS, WORKERS)
    first = decide_replicas(state, POOL, Parsed(spec, None, False), reading, LIVE, "spec", 10.0)
    busier = QueueReading(QueueStats("emails", 300, 0, 1, 0, 0, 0, 2.0, 0), WORKERS)
    again = decide_replicas(state, POOL, Parsed(spec, None, False), busier, LIVE, "status", 11.0)
    assert again.report.decision is first.report.decision
    later = decide_replicas(state, POOL, Parsed(spec, None, False), busier, LIVE, "status", 15.0)
    assert later.report.decision is not first.report.decision  # pollInterval 5s passed
    assert later.replicas == 10  # 301 jobs at 10 per worker, capped by max 10


def test_when_a_sync_decides() -> None:
    state = PoolScaling()
    assert evaluation_due(state, "status", True, 5.0, 0.0)  # no decision yet
    state.decision, state.evaluated_at, state.read_queue = _any_decision(), 10.0, True
    assert not evaluation_due(state, "status", True, 5.0, 12.0)
    assert evaluation_due(state, "status", True, 5.0, 15.0)  # the poll interval
    assert evaluation_due(state, "status", False, 5.0, 12.0)  # the queue became unreadable
    for trigger in ("spec", "poll", "notify", "queue"):
        assert evaluation_due(state, trigger, True, 5.0, 10.5)


def test_a_decision_held_by_the_scale_up_step_is_taken_again_when_its_period_ends() -> None:
    state = PoolScaling()
    state.decision = replace(_any_decision(), reconsider_at=99.5)
    state.evaluated_at, state.read_queue = 96.0, True
    assert not evaluation_due(state, "status", True, 5.0, 99.0)
    assert evaluation_due(state, "status", True, 5.0, 99.5)


def test_what_a_sync_counts_as_and_whether_it_evaluates() -> None:
    def work(*triggers: str, since: float | None = None) -> Work:
        return Work(frozenset(triggers), since)

    assert sync_trigger(work("due")) == ("due", "status")
    assert sync_trigger(work("children", "due")) == ("children", "status")
    # Changed figures evaluate the scale; a NOTIFY also asks for a newer queue read.
    assert sync_trigger(work("queue", "children")) == ("queue", "queue")
    assert sync_trigger(work("queue", "notify", since=3.0)) == ("notify", "notify")


def test_an_unreadable_queue_decides_the_fallback(spec: models.WorkerPoolSpec) -> None:
    state = PoolScaling()
    decided = decide_replicas(state, POOL, Parsed(spec, None, False), DOWN, LIVE, "notify", 1.0)
    assert decided.report.decision is not None
    assert decided.report.decision.reason == reasons.SCALE_FALLBACK
    assert decided.replicas == 4  # never lower than the live count
    assert not state.read_queue


def _any_decision() -> Decision:
    return Decision(1, reasons.SCALE_QUEUE_DEPTH, "", 1, None, True, History())
