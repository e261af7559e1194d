"""Cron expressions and time zones: the shape the API server checks, the full parse, and
the instants a schedule yields (daylight-saving jumps included)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from workerfleet.worker import cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 9 * * MON-FRI",
        "0 0 L * *",
        "0 0 * * 5L",
        "0 0 * * 1#2",
        *cron.MACROS,
    ],
)
def test_valid_expressions_parse_and_match_the_admission_shape(expression: str) -> None:
    assert re.fullmatch(cron.CRON_SHAPE_PATTERN, expression)
    assert cron.parse(expression).expression == expression


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * *", "has 4 fields: use five"),
        ("* * * * * *", "has 6 fields: use five"),  # cronsim's seconds form is not ours
        ("@often", "unknown macro '@often'"),
        ("@HOURLY", "unknown macro"),
        (" * * * * *", "without spaces around"),
        ("* * * * $", "use digits, names"),
        ("61 * * * *", "the minute field is not valid (it takes 0-59)"),
        ("0 24 * * *", "the hour field"),
        ("0 0 30 2 *", "the day of month field"),
        ("0 0 * 13 *", "the month field"),
        ("0 0 * * 8", "the day of week field"),
        ("* " * 60 + "*", "longer than 100"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(cron.CronError, match=re.escape(says)):
        cron.parse(expression)


def test_shapes_the_api_server_admits_are_exactly_the_shapes_parse_accepts() -> None:
    # The CEL rule and check_shape are twins: what one admits the other does.
    for expression in ["* * * * *", "a b c d e", "@daily", "@often", "1 2 3 4", "*/5 1-3 * * *"]:
        admitted = re.fullmatch(cron.CRON_SHAPE_PATTERN, expression) is not None
        try:
            cron.check_shape(expression)
            shaped = True
        except cron.CronError:
            shaped = False
        assert admitted == shaped, expression


def test_time_zones_are_iana_names() -> None:
    assert str(cron.time_zone("Europe/Riga")) == "Europe/Riga"
    assert str(cron.time_zone("Etc/GMT+5")) == "Etc/GMT+5"
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Base'"):
        cron.time_zone("Mars/Base")
    with pytest.raises(cron.CronError, match="not an IANA time zone name"):
        cron.time_zone("../../etc/passwd")
    assert re.fullmatch(cron.TIME_ZONE_PATTERN, "America/Argentina/Buenos_Aires")
    assert not re.fullmatch(cron.TIME_ZONE_PATTERN, "../etc")


def test_next_and_latest_runs_are_utc_instants() -> None:
    hourly = cron.parse("@hourly")
    moment = at("2026-05-01T10:30:00+00:00")
    assert hourly.next_after(moment) == at("2026-05-01T11:00:00+00:00")
    assert hourly.latest_at_or_before(moment) == at("2026-05-01T10:00:00+00:00")
    on_the_hour = at("2026-05-01T10:00:00+00:00")
    assert hourly.latest_at_or_before(on_the_hour) == on_the_hour  # at or before
    assert hourly.next_after(on_the_hour) == at("2026-05-01T11:00:00+00:00")  # strictly after
    assert hourly.next_after(moment).tzinfo is UTC


def test_runs_are_read_in_the_schedule_time_zone() -> None:
    nine = cron.parse("0 9 * * *", "America/New_York")
    assert nine.next_after(at("2026-07-01T00:00:00+00:00")) == at("2026-07-01T13:00:00+00:00")
    assert nine.next_after(at("2026-01-01T00:00:00+00:00")) == at("2026-01-01T14:00:00+00:00")


def test_a_time_skipped_by_daylight_saving_runs_once_after_the_jump() -> None:
    # Riga jumps from 03:00 to 04:00 on 2026-03-29: 03:30 does not exist that day.
    half_past_three = cron.parse("30 3 * * *", "Europe/Riga")
    runs = [at("2026-03-28T12:00:00+00:00")]
    for _ in range(3):
        runs.append(half_past_three.next_after(runs[-1]))
    assert runs[1:] == [
        at("2026-03-29T04:00:00+03:00"),
        at("2026-03-30T03:30:00+03:00"),
        at("2026-03-31T03:30:00+03:00"),
    ]


def test_a_time_repeated_by_daylight_saving_runs_once() -> None:
    # Riga goes back from 04:00 to 03:00 on 2026-10-25: 03:30 happens twice that day.
    half_past_three = cron.parse("30 3 * * *", "Europe/Riga")
    first = half_past_three.next_after(at("2026-10-24T12:00:00+00:00"))
    second = half_past_three.next_after(first)
    assert first == at("2026-10-25T03:30:00+03:00")
    assert second == at("2026-10-26T03:30:00+02:00")


def test_counting_runs_in_a_gap_stops_at_the_limit() -> None:
    minutely = cron.parse("* * * * *")
    start = at("2026-05-01T10:00:00+00:00")
    assert minutely.count_between(start, at("2026-05-01T10:05:00+00:00")) == 5
    assert minutely.count_between(start, start) == 0
    assert minutely.count_between(start, at("2026-06-01T10:00:00+00:00")) == cron.COUNT_LIMIT
