"""The scheduler's due times: one live time per key, earliest first, replaced not duplicated."""

from __future__ import annotations

from workerfleet.operator.due import DueTimes


def test_keys_come_due_in_time_order_once() -> None:
    due = DueTimes()
    due.set("b", 20.0)
    due.set("a", 10.0)
    due.set("c", 30.0)
    assert due.next_at() == 10.0
    assert due.pop_due(25.0) == ["a", "b"]
    assert due.pop_due(25.0) == []  # popped keys are no longer due
    assert (len(due), due.next_at()) == (1, 30.0)


def test_setting_a_key_again_replaces_its_time_either_way() -> None:
    due = DueTimes()
    due.set("pool", 10.0)
    due.set("pool", 50.0)
    assert due.pop_due(20.0) == []  # the earlier time is gone
    due.set("pool", 5.0)
    assert due.when("pool") == 5.0
    assert due.pop_due(20.0) == ["pool"]
    assert "pool" not in due


def test_earliest_only_brings_a_time_forward() -> None:
    due = DueTimes()
    due.earliest("pool", 10.0)
    due.earliest("pool", 30.0)
    assert due.when("pool") == 10.0
    due.earliest("pool", 3.0)
    assert due.when("pool") == 3.0


def test_a_removed_key_is_never_due() -> None:
    due = DueTimes()
    due.set("gone", 1.0)
    due.set("kept", 2.0)
    due.remove("gone")
    due.remove("never there")
    assert due.pop_due(100.0) == ["kept"]
    assert due.next_at() is None


def test_stale_entries_do_not_pile_up_when_keys_are_set_often() -> None:
    due = DueTimes()
    for round_ in range(1000):
        for key in range(10):
            due.set(key, float(round_ * 10 + key))
    assert len(due) == 10
    assert len(due._heap) <= 2 * len(due) + 64 + 1
    assert due.pop_due(float("inf")) == list(range(10))
