"""spec.schedules: what the API server and the Python twin refuse, the definitions the
operator registers, the status section, the MissedSchedule Event and the rollup's handling
of status.schedules. Pure: rows are built by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import models, rollup, schedule_timer, schedules, validation
from workerfleet.worker import cron
from workerfleet.worker.models import ScheduleRow
from workerfleet.worker.schedules import Decision, RunResult

NOW = datetime(2026, 5, 1, 10, 3, 0, 500000, tzinfo=UTC)


def pool_spec(*entries: dict[str, Any]) -> dict[str, Any]:
    return spec_dict(schedules=list(entries))


def schedule(**fields: Any) -> dict[str, Any]:
    return {"name": "tick", "cron": "* * * * *", "task": "tick", **fields}


def problem(*entries: dict[str, Any]) -> str | None:
    return validation.parse_pool("emails", pool_spec(*entries)).problem


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        (schedule(cron="61 * * * *"), "spec.schedules[0].cron", "the minute field is not valid"),
        (schedule(cron="* * * *"), "spec.schedules[0].cron", "has 4 fields: use five"),
        (schedule(cron="@often"), "spec.schedules[0].cron", "unknown macro"),
        (schedule(timeZone="Mars/Base"), "spec.schedules[0].timeZone", "unknown time zone"),
        (schedule(timeZone="../x"), "spec.schedules[0].timeZone", "not an IANA time zone"),
        (schedule(startingDeadline="soon"), "spec.schedules[0].startingDeadline", "pattern"),
        (schedule(startingDeadline="5s"), "spec.schedules[0].startingDeadline", "at least 10s"),
        (schedule(name="Tick!"), "spec.schedules[0].name", "pattern"),
        (schedule(maxAttempts=0), "spec.schedules[0].maxAttempts", "greater than or equal"),
    ],
)
def test_the_python_twin_refuses_a_bad_schedule_naming_the_field(
    entry: dict[str, Any], field: str, says: str
) -> None:
    found = problem(entry)
    assert found is not None
    assert found.startswith(f"{field}: "), found
    assert says in found


def test_duplicate_names_are_refused() -> None:
    found = problem(schedule(), schedule(cron="@daily"))
    assert found is not None
    assert "schedules[1].name 'tick' is also the name of schedules[0]" in found


def test_the_cel_rules_state_the_shapes_the_python_checks_enforce() -> None:
    # Every CEL rule of a schedule has a Python predicate; run both sides' Python on samples.
    cron_rule, zone_rule = models.Schedule.cel_rules
    assert cron_rule.field_path == ".cron"
    assert zone_rule.field_path == ".timeZone"
    assert cron.CRON_SHAPE_PATTERN in cron_rule.cel
    assert cron.TIME_ZONE_PATTERN in zone_rule.cel
    # A shape CEL admits but cron cannot run is the Python side's to refuse.
    assert problem(schedule(cron="61 * * * *")) is not None


def test_a_valid_pool_gives_definitions_on_its_queue() -> None:
    parsed = validation.parse_pool(
        "emails",
        pool_spec(
            schedule(),
            schedule(
                name="nightly",
                cron="0 3 * * *",
                timeZone="Europe/Riga",
                task="report",
                payload={"kind": "daily"},
                priority=5,
                maxAttempts=2,
                startingDeadline="5m",
                suspend=True,
            ),
        ),
    )
    assert parsed.problem is None
    assert parsed.spec is not None
    tick, nightly = schedules.definitions(parsed.spec)
    assert (tick.queue, tick.time_zone, tick.payload, tick.starting_deadline_seconds) == (
        "emails",
        "UTC",
        None,
        None,
    )
    assert nightly.payload == {"kind": "daily"}
    assert (nightly.priority, nightly.max_attempts, nightly.starting_deadline_seconds) == (
        5,
        2,
        300,
    )
    assert (nightly.time_zone, nightly.suspended) == ("Europe/Riga", True)


def row(**fields: Any) -> ScheduleRow:
    base: dict[str, Any] = {
        "pool": "mail/emails",
        "name": "tick",
        "source": "operator",
        "queue": "emails",
        "task": "tick",
        "cron": "* * * * *",
        "time_zone": "UTC",
        "payload": None,
        "priority": 0,
        "max_attempts": None,
        "starting_deadline_seconds": None,
        "suspended": False,
        "since": datetime(2026, 5, 1, 9, 0, tzinfo=UTC),
        "last_scheduled_at": datetime(2026, 5, 1, 10, 3, tzinfo=UTC),
        "last_job_id": 42,
        "missed_runs": 2,
        "last_missed_at": datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
        "next_run_at": None,
        "updated_at": NOW,
        "last_job_state": "succeeded",
    }
    return ScheduleRow(**{**base, **fields})


def test_the_status_section_lists_the_operators_schedules() -> None:
    section = schedules.status_section(
        [row(), row(name="sweep", source="worker"), row(name="old", last_job_state=None)], NOW
    )
    assert section == [
        {
            "name": "tick",
            "suspended": False,
            "lastScheduleTime": "2026-05-01T10:03:00Z",
            "lastJobId": 42,
            "lastJobState": "succeeded",
            "nextRunTime": "2026-05-01T10:04:00Z",
            "missedRuns": 2,
            "lastMissedTime": "2026-05-01T09:30:00Z",
        },
        {
            "name": "old",
            "suspended": False,
            "lastScheduleTime": "2026-05-01T10:03:00Z",
            "lastJobId": 42,
            "lastJobState": "pruned",  # the job was deleted by retention
            "nextRunTime": "2026-05-01T10:04:00Z",
            "missedRuns": 2,
            "lastMissedTime": "2026-05-01T09:30:00Z",
        },
    ]
    (suspended,) = schedules.status_section([row(suspended=True)], NOW) or []
    assert "nextRunTime" not in suspended
    assert schedules.status_section([row(source="worker")], NOW) is None


def result(decision: Decision, advanced: bool = True, **fields: Any) -> RunResult:
    return RunResult(row(**fields), decision, advanced, 7 if decision.run_at else None)


def test_missed_runs_are_told_once_by_the_scheduler_that_skipped_them() -> None:
    ran_latest = Decision(
        datetime(2026, 5, 1, 10, 3, tzinfo=UTC), 2, datetime(2026, 5, 1, 10, 2, tzinfo=UTC), None
    )
    event = schedules.missed_event(result(ran_latest), NOW)
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "MissedSchedule")
    assert event.message == (
        "schedule tick: 2 runs missed while no scheduler ran (the last skipped at "
        "2026-05-01T10:02:00Z); skipped; the latest, 2026-05-01T10:03:00Z, was enqueued"
    )
    too_late = Decision(None, 1, datetime(2026, 5, 1, 10, 2, tzinfo=UTC), None)
    event = schedules.missed_event(result(too_late, starting_deadline_seconds=30.0), NOW)
    assert event is not None
    assert "1 run missed" in event.message
    assert "found 60s late, past startingDeadline (30s)" in event.message
    assert schedules.missed_event(result(ran_latest, advanced=False), NOW) is None
    on_time = Decision(datetime(2026, 5, 1, 10, 3, tzinfo=UTC), 0, None, None)
    assert schedules.missed_event(result(on_time), NOW) is None


def test_a_pools_schedules_sleep_until_the_next_run_rereading_the_wall_clock_now_and_then() -> None:
    assert schedule_timer.sleep_seconds(None, NOW) is None  # nothing ahead: the spec wakes it
    assert schedule_timer.sleep_seconds(NOW + timedelta(seconds=0.25), NOW) == 0.25
    cap = schedule_timer.MAX_SLEEP_SECONDS
    assert schedule_timer.sleep_seconds(NOW + timedelta(minutes=1), NOW) == cap
    assert schedule_timer.sleep_seconds(NOW - timedelta(seconds=1), NOW) == 0.0


def base_observation(**overrides: Any) -> rollup.Observation:
    observation = rollup.Observation(
        name="emails",
        generation=1,
        paused=False,
        spec_problem=None,
        desired=1,
        deployment=None,
        pods=[],
        queue=None,
        short_since=None,
        previous={},
        now=NOW,
    )
    return replace(observation, **overrides)


def test_the_rollup_writes_keeps_or_removes_the_schedules_section() -> None:
    section = schedules.status_section([row()], NOW)
    written = rollup.rollup(base_observation(schedules=section))
    assert written.status["schedules"] == section
    kept = rollup.rollup(base_observation(previous=written.status))  # not read this time
    assert kept.status["schedules"] == section
    removed = rollup.rollup(base_observation(previous=kept.status, schedules=None))
    assert "schedules" not in removed.status
    assert removed.changed
    assert rollup.status_patch(kept.status, removed.status)["schedules"] is None
