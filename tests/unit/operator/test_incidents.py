"""The alert rules and the incident life cycle, table-driven: one row per rule and per edge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workerfleet.operator import incidents, models
from workerfleet.operator.incidents import Evaluation, Incident, PoolFacts
from workerfleet.worker.models import MinuteFailures, QueueStats, WorkerStats

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def facts(
    name: str = "emails",
    *,
    pending: int = 0,
    online: int = 1,
    draining: int = 0,
    running: int = 0,
    oldest: float | None = None,
    failures: Sequence[MinuteFailures] = (),
    concurrency: int = 4,
    ceiling: int = 4,
    readable: bool = True,
) -> PoolFacts:
    queue = QueueStats(
        queue=name,
        pending=pending,
        scheduled=0,
        running=running,
        succeeded=0,
        dead=0,
        cancelled=0,
        oldest_pending_seconds=oldest,
        finished_last_minute=0,
        failures=tuple(failures),
    )
    workers = WorkerStats(
        pool=f"ns/{name}",
        online=online,
        busy=0,
        idle=online,
        draining=draining,
        dead=0,
        running_jobs=running,
    )
    return PoolFacts(
        name=name,
        queue=queue if readable else None,
        workers=workers if readable else None,
        concurrency=concurrency,
        ceiling=ceiling,
    )


def only(rule: str, **settings: Any) -> models.MonitorRules:
    """Rules with every rule but ``rule`` disabled; ``settings`` are that rule's."""
    raw: dict[str, Any] = {r.name: {"enabled": False} for r in incidents.RULES}
    raw[rule] = settings
    return models.MonitorRules.model_validate(raw)


@dataclass
class Step:
    at: float
    """Seconds after T0."""
    pools: list[PoolFacts]
    states: dict[tuple[str, str], str]
    """(rule, pool) -> state of its newest incident after this run (absent: none)."""
    changes: list[str] = field(default_factory=list)
    """'fired:rule/pool', 'resolved:...', 'repeated:...' in this run."""
    existing: list[str] | None = None
    """Every pool in the namespace (default: the selected ones)."""


@dataclass
class Row:
    case: str
    rules: models.MonitorRules
    steps: list[Step]
    repeat_seconds: float | None = None


def run_steps(row: Row, roundtrip: bool = False) -> list[Evaluation]:
    previous: list[Incident] = []
    results = []
    for step in row.steps:
        existing = step.existing if step.existing is not None else [p.name for p in step.pools]
        result = incidents.evaluate(
            row.rules,
            step.pools,
            existing,
            previous,
            T0 + timedelta(seconds=step.at),
            row.repeat_seconds,
        )
        newest: dict[tuple[str, str], str] = {}
        for incident in reversed(result.incidents):
            newest[incident.key] = incident.state
        assert newest == step.states, f"{row.case} at {step.at}s: {result.incidents}"
        changes = [f"{c.kind}:{c.incident.rule}/{c.incident.pool}" for c in result.changes]
        assert changes == step.changes, f"{row.case} at {step.at}s"
        previous = list(result.incidents)
        if roundtrip:  # as an operator restart reads them back from status
            previous = incidents.from_status([incidents.to_status(i) for i in previous])
        results.append(result)
    return results


NWP = ("noWorkersWithPending", "emails")
STARVED = facts(pending=5, online=0)
SERVED = facts(pending=5, online=1)

ROWS = [
    Row(
        "noWorkersWithPending fires once `for` is exactly met and resolves once",
        only("noWorkersWithPending", **{"for": "1m"}),
        [
            Step(0, [STARVED], {NWP: "pending"}),
            Step(30, [STARVED], {NWP: "pending"}),
            Step(60, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
            Step(90, [STARVED], {NWP: "firing"}),
            Step(120, [SERVED], {NWP: "resolved"}, ["resolved:noWorkersWithPending/emails"]),
            Step(150, [SERVED], {NWP: "resolved"}),
        ],
    ),
    Row(
        "`for` not yet elapsed: pending, nothing told",
        only("noWorkersWithPending", **{"for": "1m"}),
        [Step(0, [STARVED], {NWP: "pending"}), Step(59, [STARVED], {NWP: "pending"})],
    ),
    Row(
        "flapping input restarts the `for` clock and never fires early",
        only("noWorkersWithPending", **{"for": "1m"}),
        [
            Step(0, [STARVED], {NWP: "pending"}),
            Step(30, [SERVED], {}),
            Step(60, [STARVED], {NWP: "pending"}),
            Step(90, [SERVED], {}),
            Step(100, [STARVED], {NWP: "pending"}),
            Step(159, [STARVED], {NWP: "pending"}),
            Step(160, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
        ],
    ),
    Row(
        "no pending jobs and no workers is no incident",
        only("noWorkersWithPending", **{"for": "0s"}),
        [Step(0, [facts(pending=0, online=0)], {})],
    ),
    Row(
        "failedJobs: the threshold exactly met fires at once",
        only("failedJobs", threshold=10, window="15m"),
        [
            Step(0, [facts(failures=[MinuteFailures(0, 9, 0)])], {}),
            Step(
                60,
                [facts(failures=[MinuteFailures(0, 1, 0), MinuteFailures(1, 9, 0)])],
                {("failedJobs", "emails"): "firing"},
                ["fired:failedJobs/emails"],
            ),
        ],
    ),
    Row(
        "failedJobs: failures older than the window do not count",
        only("failedJobs", threshold=10, window="15m"),
        [
            Step(0, [facts(failures=[MinuteFailures(14, 9, 0), MinuteFailures(15, 50, 0)])], {}),
        ],
    ),
    Row(
        "deadJobs: any dead-lettered job in the window",
        only("deadJobs"),
        [
            Step(0, [facts(failures=[MinuteFailures(3, 2, 0)])], {}),
            Step(
                60,
                [facts(failures=[MinuteFailures(4, 2, 1)])],
                {("deadJobs", "emails"): "firing"},
                ["fired:deadJobs/emails"],
            ),
            Step(
                17 * 60,
                [facts(failures=[MinuteFailures(20, 2, 1)])],
                {("deadJobs", "emails"): "resolved"},
                ["resolved:deadJobs/emails"],
            ),
        ],
    ),
    Row(
        "oldestPending: waiting exactly the threshold is not longer than it",
        only("oldestPending", threshold="10m"),
        [
            Step(0, [facts(pending=1, oldest=600.0)], {}),
            Step(
                1,
                [facts(pending=1, oldest=601.0)],
                {("oldestPending", "emails"): "firing"},
                ["fired:oldestPending/emails"],
            ),
        ],
    ),
    Row(
        "runningExceedsCapacity: more running than (online + draining) x concurrency, for 2m",
        only("runningExceedsCapacity"),
        [
            Step(0, [facts(online=1, draining=1, running=8)], {}),
            Step(
                10,
                [facts(online=1, draining=1, running=9)],
                {("runningExceedsCapacity", "emails"): "pending"},
            ),
            Step(
                130,
                [facts(online=1, draining=1, running=9)],
                {("runningExceedsCapacity", "emails"): "firing"},
                ["fired:runningExceedsCapacity/emails"],
            ),
        ],
    ),
    Row(
        "queueGrowing: a rising backlog at the ceiling for `for` fires",
        only("queueGrowing", **{"for": "10m"}),
        [
            Step(0, [facts(pending=10, online=4)], {("queueGrowing", "emails"): "pending"}),
            Step(300, [facts(pending=15, online=4)], {("queueGrowing", "emails"): "pending"}),
            Step(
                600,
                [facts(pending=15, online=4)],
                {("queueGrowing", "emails"): "firing"},
                ["fired:queueGrowing/emails"],
            ),
            Step(
                630,
                [facts(pending=14, online=4)],
                {("queueGrowing", "emails"): "resolved"},
                ["resolved:queueGrowing/emails"],
            ),
        ],
    ),
    Row(
        "queueGrowing: a flat backlog at the ceiling holds but never fires",
        only("queueGrowing", **{"for": "10m"}),
        [
            Step(0, [facts(pending=10, online=4)], {("queueGrowing", "emails"): "pending"}),
            Step(900, [facts(pending=10, online=4)], {("queueGrowing", "emails"): "pending"}),
        ],
    ),
    Row(
        "queueGrowing: below the ceiling the autoscaler still has room",
        only("queueGrowing", **{"for": "0s"}),
        [
            Step(0, [facts(pending=10, online=3)], {}),
            Step(60, [facts(pending=50, online=3)], {}),
        ],
    ),
    Row(
        "a pool that stops being selected resolves its firing incident",
        only("noWorkersWithPending", **{"for": "0s"}),
        [
            Step(0, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
            Step(30, [], {NWP: "resolved"}, ["resolved:noWorkersWithPending/emails"], ["emails"]),
        ],
    ),
    Row(
        "a pool deleted while firing resolves its incident",
        only("noWorkersWithPending", **{"for": "0s"}),
        [
            Step(0, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
            Step(30, [], {NWP: "resolved"}, ["resolved:noWorkersWithPending/emails"], []),
        ],
    ),
    Row(
        "a pending incident of an unselected pool is dropped without a word",
        only("noWorkersWithPending", **{"for": "1m"}),
        [Step(0, [STARVED], {NWP: "pending"}), Step(30, [], {}, [], ["emails"])],
    ),
    Row(
        "a pool that cannot be read keeps its incidents as they are",
        only("noWorkersWithPending", **{"for": "0s"}),
        [
            Step(0, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
            Step(30, [facts(readable=False)], {NWP: "firing"}),
            Step(60, [SERVED], {NWP: "resolved"}, ["resolved:noWorkersWithPending/emails"]),
        ],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.case for row in ROWS])
def test_rules_and_incident_life_cycle(row: Row) -> None:
    run_steps(row)


@pytest.mark.parametrize("row", ROWS, ids=[row.case for row in ROWS])
def test_the_same_through_status_as_after_a_restart(row: Row) -> None:
    run_steps(row, roundtrip=True)


def test_a_disabled_rule_resolves_its_firing_incident() -> None:
    firing = incidents.evaluate(
        only("noWorkersWithPending", **{"for": "0s"}), [STARVED], ["emails"], [], T0
    )
    assert [c.kind for c in firing.changes] == ["fired"]
    disabled = incidents.evaluate(
        only("failedJobs"), [STARVED], ["emails"], firing.incidents, T0 + timedelta(seconds=30)
    )
    (resolved,) = disabled.incidents
    assert (resolved.state, resolved.message) == (
        "resolved",
        "the rule noWorkersWithPending is disabled",
    )
    assert [c.kind for c in disabled.changes] == ["resolved"]


def test_resolution_messages_say_why() -> None:
    rules = only("noWorkersWithPending", **{"for": "0s"})
    firing = incidents.evaluate(rules, [STARVED], ["emails"], [], T0).incidents
    later = T0 + timedelta(seconds=30)
    (unselected,) = incidents.evaluate(rules, [], ["emails"], firing, later).incidents
    assert unselected.message == "the WorkerPool is no longer selected by this Monitor"
    (deleted,) = incidents.evaluate(rules, [], [], firing, later).incidents
    assert deleted.message == "the WorkerPool was deleted"
    (cleared,) = incidents.evaluate(rules, [SERVED], ["emails"], firing, later).incidents
    assert cleared.message == "5 jobs ready to run, 1 workers online"
    assert cleared.resolved_at == later
    assert cleared.fired_at == T0


def test_repeat_interval_renotifies_a_long_incident_only_when_due() -> None:
    row = Row(
        "repeat",
        only("noWorkersWithPending", **{"for": "0s"}),
        [
            Step(0, [STARVED], {NWP: "firing"}, ["fired:noWorkersWithPending/emails"]),
            Step(1800, [STARVED], {NWP: "firing"}),
            Step(3600, [STARVED], {NWP: "firing"}, ["repeated:noWorkersWithPending/emails"]),
            Step(3660, [STARVED], {NWP: "firing"}),
            Step(7200, [STARVED], {NWP: "firing"}, ["repeated:noWorkersWithPending/emails"]),
        ],
        repeat_seconds=3600,
    )
    run_steps(row, roundtrip=True)


def test_incidents_are_newest_first_and_resolved_ones_expire() -> None:
    rules = only("noWorkersWithPending", **{"for": "0s"})
    a, b = facts("a", pending=1, online=0), facts("b", pending=1, online=0)
    names = ["a", "b"]
    first = incidents.evaluate(rules, [a], names, [], T0)
    second = incidents.evaluate(rules, [a, b], names, first.incidents, T0 + timedelta(minutes=1))
    assert [(i.pool, i.state) for i in second.incidents] == [("b", "firing"), ("a", "firing")]
    third = incidents.evaluate(
        rules, [facts("a"), b], names, second.incidents, T0 + timedelta(minutes=2)
    )
    assert [(i.pool, i.state) for i in third.incidents] == [("a", "resolved"), ("b", "firing")]
    day_later = T0 + timedelta(hours=24, minutes=2)
    fourth = incidents.evaluate(rules, [facts("a"), b], names, third.incidents, day_later)
    assert [(i.pool, i.state) for i in fourth.incidents] == [("b", "firing")]


def test_the_list_is_bounded_and_never_refires_what_it_kept() -> None:
    rules = only("noWorkersWithPending", **{"for": "0s"})
    many = [facts(f"p{n:03d}", pending=1, online=0) for n in range(models.MAX_INCIDENTS + 20)]
    names = [f.name for f in many]
    first = incidents.evaluate(rules, many, names, [], T0)
    assert len(first.incidents) == models.MAX_INCIDENTS
    assert len(first.changes) == models.MAX_INCIDENTS
    second = incidents.evaluate(rules, many, names, first.incidents, T0 + timedelta(minutes=1))
    assert second.changes == ()
    assert [i.key for i in second.incidents] == [i.key for i in first.incidents]


def test_status_round_trip_keeps_every_field() -> None:
    incident = Incident(
        rule="failedJobs",
        pool="emails",
        state="resolved",
        since=T0,
        message="12 failed attempts",
        value=12,
        first_value=10,
        fired_at=T0 + timedelta(minutes=1),
        resolved_at=T0 + timedelta(minutes=5),
        notified_at=T0 + timedelta(minutes=5),
    )
    stored = incidents.to_status(incident)
    assert stored["firedAt"] == "2026-03-01T12:01:00Z"
    assert incidents.from_status([stored]) == [incident]
    assert incidents.from_status([{"rule": "x"}, {"garbage": True}]) == []


def test_rules_needing_the_spec_cannot_tell_for_a_pool_whose_spec_does_not_parse() -> None:
    rules = only("runningExceedsCapacity", **{"for": "0s"})
    firing = incidents.evaluate(rules, [facts(online=1, running=9)], ["emails"], [], T0)
    assert [c.kind for c in firing.changes] == ["fired"]
    unknown = replace(facts(online=1, running=0), concurrency=None, ceiling=None)
    later = incidents.evaluate(
        rules, [unknown], ["emails"], firing.incidents, T0 + timedelta(minutes=1)
    )
    assert later.changes == ()
    assert [i.state for i in later.incidents] == ["firing"]
    growing = only("queueGrowing", **{"for": "0s"})
    assert incidents.evaluate(growing, [unknown], ["emails"], [], T0).incidents == ()
