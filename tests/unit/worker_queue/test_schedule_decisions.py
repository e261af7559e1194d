"""schedules.decide, the CronJob rule, as a pure function of a schedule's row and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from workerfleet.worker import schedules
from workerfleet.worker.models import ScheduleRow

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def row(**fields: Any) -> ScheduleRow:
    base: dict[str, Any] = {
        "pool": "p",
        "name": "s",
        "source": "operator",
        "queue": "q",
        "task": "t",
        "cron": "*/10 * * * *",
        "time_zone": "UTC",
        "payload": None,
        "priority": 0,
        "max_attempts": None,
        "starting_deadline_seconds": None,
        "suspended": False,
        "since": T0 + timedelta(seconds=30),
        "last_scheduled_at": None,
        "last_missed_at": None,
        "last_job_id": None,
        "missed_runs": 0,
        "next_run_at": None,
        "updated_at": T0,
        "last_job_state": None,
    }
    return ScheduleRow(**{**base, **fields})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_nothing_is_due_before_the_first_run() -> None:
    decision = schedules.decide(row(), at(9.9))
    assert (decision.run_at, decision.missed, decision.acts) == (None, 0, False)
    assert decision.next_run == at(10)


def test_a_run_is_due_at_its_time_and_not_again_after_it_is_recorded() -> None:
    due = schedules.decide(row(), at(10))
    assert (due.run_at, due.missed, due.next_run) == (at(10), 0, at(20))
    done = schedules.decide(row(last_scheduled_at=at(10)), at(10.5))
    assert not done.acts
    assert done.next_run == at(20)


def test_a_run_before_the_schedule_existed_is_neither_run_nor_missed() -> None:
    decision = schedules.decide(row(since=at(10.5)), at(15))
    assert not decision.acts
    assert decision.next_run == at(20)


def test_after_a_gap_the_latest_runs_and_the_others_are_counted() -> None:
    decision = schedules.decide(row(last_scheduled_at=at(10)), at(45))
    assert (decision.run_at, decision.missed, decision.latest_missed) == (at(40), 2, at(30))


def test_past_the_starting_deadline_every_run_of_the_gap_is_missed() -> None:
    late = row(last_scheduled_at=at(10), starting_deadline_seconds=60.0)
    decision = schedules.decide(late, at(41.5))
    assert (decision.run_at, decision.missed, decision.latest_missed) == (None, 3, at(40))
    in_time = schedules.decide(late, at(41))  # exactly at the deadline: still runs
    assert (in_time.run_at, in_time.missed) == (at(40), 2)


def test_a_skipped_run_counts_as_a_mark_like_an_enqueued_one() -> None:
    decision = schedules.decide(row(last_missed_at=at(40)), at(45))
    assert not decision.acts


def test_a_suspended_schedule_has_nothing_due_and_no_next_run() -> None:
    decision = schedules.decide(row(suspended=True), at(45))
    assert decision == schedules.Decision(None, 0, None, None)
