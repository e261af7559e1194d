from __future__ import annotations

import re

import pytest

from workerfleet.durations import DURATION_PATTERN, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2.5", 2.5),
        ("0", 0.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
    ],
)
def test_parses_what_people_write(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert re.match(DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["", "5 minutes", "-5s", "5x", "m5", "1h-3m", "s"])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)
    assert not re.match(DURATION_PATTERN, text)


def test_numbers_pass_through_and_negatives_are_refused() -> None:
    assert parse_duration(3) == 3.0
    with pytest.raises(DurationError):
        parse_duration(-1)


@pytest.mark.parametrize(
    ("seconds", "text"), [(90, "1m30s"), (0.25, "250ms"), (3600, "1h"), (0, "0s"), (5, "5s")]
)
def test_format_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
