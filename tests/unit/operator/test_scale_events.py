"""Scale-change Events: one per pool per interval, a burst told as one summary."""

from __future__ import annotations

from workerfleet.operator.scale_events import ScaleEvents


def test_the_first_change_is_told_at_once_and_a_burst_is_summarised() -> None:
    events = ScaleEvents(interval_seconds=10.0)
    assert events.changed(0, 10, "0 -> 10: burst", now=100.0) == "0 -> 10: burst"
    assert events.changed(10, 15, "10 -> 15: more", now=101.0) is None
    assert events.changed(15, 20, "15 -> 20: capped", now=105.0) is None
    assert events.flush(now=109.0) is None  # not yet 10 s since the last Event
    summary = events.flush(now=110.0)
    assert summary == "10 -> 20 in 2 changes over 9s; last: 15 -> 20: capped"
    assert events.flush(now=200.0) is None  # told once


def test_a_single_held_change_is_told_as_itself() -> None:
    events = ScaleEvents(interval_seconds=10.0)
    events.changed(0, 2, "0 -> 2", now=0.0)
    assert events.changed(2, 1, "2 -> 1: quiet", now=3.0) is None
    assert events.flush(now=10.0) == "2 -> 1: quiet"


def test_changes_further_apart_than_the_interval_are_each_told() -> None:
    events = ScaleEvents(interval_seconds=10.0)
    assert events.changed(0, 2, "a", now=0.0) == "a"
    assert events.changed(2, 4, "b", now=10.0) == "b"
    assert events.changed(4, 2, "c", now=25.0) == "c"
