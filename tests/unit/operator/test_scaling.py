"""The scaling policy, one row per rule (in the style of the HPA's replica calculator tests).

Each row names the rule it proves; times are seconds on the policy's own clock (``NOW``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import models, reasons, scaling
from workerfleet.operator.scaling import History
from workerfleet.worker.models import QueueStats, WorkerStats

NOW = 1000.0
# A window that is started and empty: no earlier recommendation holds a scale-down.
SETTLED = History(started=True)


@dataclass(frozen=True)
class Row:
    rule: str
    current: int | None
    expected: int
    reason: str
    pending: int = 0
    running: int = 0
    scheduled: int = 0
    holding: int = 0
    readable: bool = True
    history: History = SETTLED
    spec: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    active: bool = True
    says: str = ""


def make_spec(**overrides: Any) -> models.WorkerPoolSpec:
    base: dict[str, Any] = {
        "replicas": {"min": 0, "max": 20},
        "scaling": {"jobsPerWorker": 10, "maxScaleUpStep": 10, "scaleDownDelay": "120s"},
        "worker": {"handlers": "workerfleet.worker.demo_handlers"},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return models.WorkerPoolSpec.model_validate(spec_dict(**base))


def inputs(row: Row) -> scaling.ScalingInputs:
    queue = QueueStats("emails", row.pending, row.scheduled, row.running, 0, 0, 0, None, 0)
    workers = WorkerStats("mail/emails", 0, 0, 0, 0, 0, holding=row.holding)
    return scaling.ScalingInputs(
        spec=make_spec(**row.spec),
        current=row.current,
        queue=queue if row.readable else None,
        workers=workers if row.readable else None,
        history=row.history,
        now=NOW,
    )


ROWS = [
    Row(
        "desired = ceil((ready pending + running) / jobsPerWorker)",
        current=2, pending=25, running=10, expected=4, reason=reasons.SCALE_QUEUE_DEPTH,
        says="2 -> 4: 25 ready pending + 10 running at 10 per worker",
    ),
    Row(
        "scheduled jobs do not count until they are due",
        current=1, pending=5, scheduled=500, expected=1, reason=reasons.SCALE_QUEUE_DEPTH,
        says="holding 1",
    ),
    Row(
        "clamped to max",
        current=20, pending=1000, expected=20, reason=reasons.SCALE_MAXIMUM,
        limit=reasons.LIMIT_TOO_MANY, says="capped by max 20",
    ),
    Row(
        "clamped to min",
        current=3, spec={"replicas": {"min": 3}}, expected=3, reason=reasons.REPLICAS_MINIMUM,
        limit=reasons.LIMIT_TOO_FEW, says="raised to min 3",
    ),
    Row(
        "from zero: stays at zero below activationJobs",
        current=0, pending=4, spec={"scaling": {"activationJobs": 5}}, expected=0,
        reason=reasons.SCALE_BELOW_ACTIVATION, says="below activationJobs 5",
    ),
    Row(
        "from zero: wakes at activationJobs",
        current=0, pending=5, spec={"scaling": {"activationJobs": 5}}, expected=1,
        reason=reasons.SCALE_QUEUE_DEPTH, says="0 -> 1",
    ),
    Row(
        "activationJobs applies at zero only",
        current=2, pending=3, spec={"scaling": {"activationJobs": 5}}, expected=1,
        reason=reasons.SCALE_QUEUE_DEPTH, says="2 -> 1",
    ),
    Row(
        "never to zero while a job of the queue runs",
        current=1, running=1, expected=1, reason=reasons.SCALE_QUEUE_DEPTH,
    ),
    Row(
        "never below the workers holding a job",
        current=6, running=4, holding=4, expected=4, reason=reasons.SCALE_BUSY_WORKERS,
        limit=reasons.LIMIT_BUSY_WORKERS, says="held by 4 workers holding a job",
    ),
    Row(
        "the busy floor never scales up (holding counts from a heartbeat ago)",
        current=2, running=1, holding=5, expected=2, reason=reasons.SCALE_BUSY_WORKERS,
        limit=reasons.LIMIT_BUSY_WORKERS,
    ),
    Row(
        "scale-up is limited by maxScaleUpStep",
        current=2, pending=200, spec={"scaling": {"maxScaleUpStep": 4}}, expected=6,
        reason=reasons.SCALE_UP_LIMITED, limit=reasons.LIMIT_SCALE_UP,
        says="limited by maxScaleUpStep 4 per 15s (from 2)",
    ),
    Row(
        "the step counts from the replicas at the start of the 15 s period",
        current=6, pending=200, spec={"scaling": {"maxScaleUpStep": 4}},
        history=History(scale_ups=((NOW - 5, 4),), started=True), expected=6,
        reason=reasons.SCALE_UP_LIMITED, limit=reasons.LIMIT_SCALE_UP, says="(from 2)",
    ),
    Row(
        "a new period allows another step",
        current=6, pending=200, spec={"scaling": {"maxScaleUpStep": 4}},
        history=History(scale_ups=((NOW - 15, 4),), started=True), expected=10,
        reason=reasons.SCALE_UP_LIMITED, limit=reasons.LIMIT_SCALE_UP,
    ),
    Row(
        "a percentage step is of the period's start, rounded up",
        current=3, pending=200, spec={"scaling": {"maxScaleUpStep": "50%"}}, expected=5,
        reason=reasons.SCALE_UP_LIMITED, limit=reasons.LIMIT_SCALE_UP,
    ),
    Row(
        "a percentage step adds at least one worker (from zero too)",
        current=0, pending=200, spec={"scaling": {"maxScaleUpStep": "50%"}}, expected=1,
        reason=reasons.SCALE_UP_LIMITED, limit=reasons.LIMIT_SCALE_UP,
    ),
    Row(
        "a step as large as max lets a burst through at once",
        current=0, pending=1000, spec={"scaling": {"maxScaleUpStep": 20}}, expected=20,
        reason=reasons.SCALE_MAXIMUM, limit=reasons.LIMIT_TOO_MANY, says="0 -> 20",
    ),
    Row(
        "min is reached at once whatever the step",
        current=None, spec={"replicas": {"min": 12}}, expected=12,
        reason=reasons.REPLICAS_MINIMUM, limit=reasons.LIMIT_TOO_FEW, says="create with 12",
    ),
    Row(
        "scale-down waits while a higher recommendation is in the last scaleDownDelay",
        current=10, history=History(recommendations=((NOW - 60, 10),), started=True),
        expected=10, reason=reasons.SCALE_DOWN_DELAYED,
        says="a recommendation of 10 in the last 120s (scaleDownDelay) keeps it",
    ),
    Row(
        "scale-down goes to the highest recommendation still in the window",
        current=10, history=History(recommendations=((NOW - 150, 10), (NOW - 60, 6)), started=True),
        expected=6, reason=reasons.SCALE_DOWN_DELAYED, says="10 -> 6",
    ),
    Row(
        "scale-down follows the queue once the whole delay had lower recommendations",
        current=10, pending=30, history=History(recommendations=((NOW - 121, 10),), started=True),
        expected=3, reason=reasons.SCALE_QUEUE_DEPTH, says="10 -> 3",
    ),
    Row(
        "an operator restart starts a fresh window and never scales down at once",
        current=10, history=History(), expected=10, reason=reasons.SCALE_DOWN_DELAYED,
    ),
    Row(
        "scaleDownDelay 0 scales down at once",
        current=10, spec={"scaling": {"scaleDownDelay": "0s"}},
        history=History(recommendations=((NOW - 1, 10),), started=True), expected=0,
        reason=reasons.SCALE_QUEUE_DEPTH,
    ),
    Row(
        "queue unreadable: hold max(current, fallbackReplicas), never lower",
        current=8, readable=False, expected=8, reason=reasons.SCALE_FALLBACK, active=False,
        says="the queue cannot be read",
    ),
    Row(
        "queue unreadable: at least fallbackReplicas",
        current=0, readable=False, spec={"scaling": {"fallbackReplicas": 2}}, expected=2,
        reason=reasons.SCALE_FALLBACK, active=False,
    ),
    Row(
        "queue unreadable: at least min",
        current=None, readable=False, spec={"replicas": {"min": 3}}, expected=3,
        reason=reasons.SCALE_FALLBACK, active=False,
    ),
    Row(
        "replicas.override pins, whatever the queue",
        current=5, pending=1000, spec={"replicas": {"override": 3}}, expected=3,
        reason=reasons.REPLICAS_OVERRIDE, active=False, says="5 -> 3: pinned",
    ),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[row.rule for row in ROWS])
def test_rule(row: Row) -> None:
    decision = scaling.decide(inputs(row))
    assert (decision.replicas, decision.reason) == (row.expected, row.reason), decision.message
    assert decision.limit == row.limit, decision.message
    assert decision.active == row.active
    assert row.says in decision.message


def test_every_rule_has_its_own_row() -> None:
    assert len({row.rule for row in ROWS}) == len(ROWS)


def run(spec: models.WorkerPoolSpec, steps: list[tuple[float, int, int]]) -> list[int]:
    """Evaluations at (now, pending, running), each applying its decision; the counts."""
    history, current, counts = History(), 0, []
    for now, pending, running in steps:
        decision = scaling.decide(
            scaling.ScalingInputs(
                spec=spec,
                current=current,
                queue=QueueStats("emails", pending, 0, running, 0, 0, 0, None, 0),
                workers=WorkerStats("mail/emails", current, 0, current, 0, 0),
                history=history,
                now=now,
            )
        )
        history, current = decision.history, decision.replicas
        counts.append(current)
    return counts


def test_a_burst_of_notifications_adds_one_step_per_period() -> None:
    # Twenty evaluations within a second (one per NOTIFY) add one step, not twenty.
    burst = [(NOW + i / 20, 1000, 0) for i in range(20)]
    later = [(NOW + 15.0, 1000, 0)]
    assert run(make_spec(), burst + later) == [10] * 20 + [20]


def test_the_window_remembers_the_peak_not_every_evaluation() -> None:
    # Many evaluations with a shrinking queue keep the envelope to its distinct values.
    steps = [(NOW + i, 200 - i, 0) for i in range(180)]
    spec = make_spec(scaling={"maxScaleUpStep": 20})
    history, current = History(), 0
    for now, pending, running in steps:
        decision = scaling.decide(
            scaling.ScalingInputs(
                spec, current, QueueStats("emails", pending, 0, running, 0, 0, 0, None, 0),
                WorkerStats("mail/emails", 0, 0, 0, 0, 0), history, now,
            )
        )  # fmt: skip
        history, current = decision.history, decision.replicas
    assert len(history.recommendations) <= 20
    # The last evaluation (t=179) runs the highest recommendation of t=59..179:
    # ceil(141 / 10) at t=59, not the peak of 20 at t=0.
    assert current == 15


def test_a_limited_scale_up_says_when_to_look_again() -> None:
    row = Row("", current=6, pending=200, spec={"scaling": {"maxScaleUpStep": 4}},
              history=History(scale_ups=((NOW - 5, 4),), started=True), expected=6,
              reason=reasons.SCALE_UP_LIMITED)  # fmt: skip
    assert scaling.decide(inputs(row)).reconsider_at == NOW - 5 + scaling.SCALE_UP_PERIOD_SECONDS
    free = Row("", current=2, pending=25, expected=3, reason=reasons.SCALE_QUEUE_DEPTH)
    assert scaling.decide(inputs(free)).reconsider_at is None


def test_a_held_scale_down_says_when_its_window_lets_go() -> None:
    held = Row("", current=10, history=History(recommendations=((NOW - 60, 10),), started=True),
               expected=10, reason=reasons.SCALE_DOWN_DELAYED)  # fmt: skip
    first = scaling.decide(inputs(held))
    assert first.reconsider_at is not None
    assert NOW + 60 < first.reconsider_at < NOW + 60.001  # just after scaleDownDelay's 120s
    # At that instant the entry has left: the scale-down goes on (no wake-up in the past).
    later = replace(inputs(held), history=first.history, now=first.reconsider_at)
    assert scaling.decide(later).replicas == 0
    partly = Row("", current=10,
                 history=History(recommendations=((NOW - 150, 10), (NOW - 60, 6)), started=True),
                 expected=6, reason=reasons.SCALE_DOWN_DELAYED)  # fmt: skip
    assert scaling.decide(inputs(partly)).reconsider_at == math.nextafter(NOW + 60, math.inf)
    free = Row("", current=10, pending=30,
               history=History(recommendations=((NOW - 121, 10),), started=True),
               expected=3, reason=reasons.SCALE_QUEUE_DEPTH)  # fmt: skip
    assert scaling.decide(inputs(free)).reconsider_at is None


def test_step_size() -> None:
    assert [scaling.step_size(4, 10), scaling.step_size("100%", 10)] == [4, 10]
    assert [scaling.step_size("10%", 1), scaling.step_size("10%", 0)] == [1, 1]
    assert scaling.step_size("25%", 10) == 3


def test_jobs_per_worker_below_concurrency_is_named_with_the_fix() -> None:
    spec = make_spec(scaling={"jobsPerWorker": 2}, worker={"concurrency": 4})
    warning = scaling.idle_slots_warning(spec)
    assert warning is not None
    assert "scaling.jobsPerWorker (2) is below worker.concurrency (4)" in warning
    assert "2 of each worker's 4 slots stay idle" in warning
    assert "at least 4" in warning
    assert scaling.idle_slots_warning(make_spec(scaling={"jobsPerWorker": 4})) is None
