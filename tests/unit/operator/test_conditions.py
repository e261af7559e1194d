from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workerfleet.operator import conditions
from workerfleet.operator.conditions import ConditionUpdate

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_first_condition_gets_now_and_generation() -> None:
    (cond,) = conditions.merge_conditions(
        None,
        [ConditionUpdate("Available", "False", "NoReadyWorkers", "0 of 2")],
        generation=3,
        now=T0,
    )
    assert cond == {
        "type": "Available",
        "status": "False",
        "reason": "NoReadyWorkers",
        "message": "0 of 2",
        "lastTransitionTime": "2026-01-01T12:00:00Z",
        "observedGeneration": 3,
    }


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.merge_conditions(
        None, [ConditionUpdate("Degraded", "False", "AsExpected", "ok")], generation=1, now=T0
    )
    same_status = conditions.merge_conditions(
        first,
        [ConditionUpdate("Degraded", "False", "WorkersStarting", "1 of 2")],
        generation=2,
        now=T1,
    )
    assert same_status[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert same_status[0]["reason"] == "WorkersStarting"
    assert same_status[0]["observedGeneration"] == 2
    flipped = conditions.merge_conditions(
        same_status,
        [ConditionUpdate("Degraded", "True", "WorkersNotReady", "x")],
        generation=2,
        now=T1,
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"


def test_unrelated_conditions_are_kept() -> None:
    previous = [
        {
            "type": "Scaling",
            "status": "True",
            "reason": "X",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    merged = conditions.merge_conditions(
        previous, [ConditionUpdate("Paused", "False", "Active", "")], generation=None, now=T0
    )
    assert [c["type"] for c in merged] == ["Paused", "Scaling"]
    assert "observedGeneration" not in merged[0]


def test_transitions_report_changes_and_first_sightings() -> None:
    before = conditions.merge_conditions(
        None,
        [ConditionUpdate("A", "True", "R", "m"), ConditionUpdate("B", "False", "R", "m")],
        generation=1,
        now=T0,
    )
    after = conditions.merge_conditions(
        before,
        [
            ConditionUpdate("A", "True", "R2", "m2"),
            ConditionUpdate("B", "True", "Bad", "broken"),
            ConditionUpdate("C", "Unknown", "NotChecked", ""),
        ],
        generation=1,
        now=T1,
    )
    changes = conditions.transitions(before, after)
    assert [(c.type, c.before, c.after) for c in changes] == [
        ("B", "False", "True"),
        ("C", None, "Unknown"),
    ]
    assert changes[0].reason == "Bad"
