"""When a pool's status is stale, when a write goes out, when the pool is next due."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from workerfleet.operator import refresh
from workerfleet.operator.rollup import STARTUP_GRACE_SECONDS
from workerfleet.operator.views import PodView
from workerfleet.worker.models import QueueStats, WorkerStats

STATS = QueueStats("emails", 3, 0, 1, 10, 0, 0, 2.0, 4)
WORKERS = WorkerStats("mail/emails", 1, 1, 0, 0, 0)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_counts_that_moved_refresh_at_once_the_clock_alone_now_and_then() -> None:
    seen = (STATS, WORKERS)
    assert refresh.figures_change(seen, seen) is None
    assert refresh.figures_change(None, seen) == "counts"
    assert refresh.figures_change(seen, (replace(STATS, pending=4), WORKERS)) == "counts"
    assert refresh.figures_change(seen, (replace(STATS, succeeded=11), WORKERS)) == "counts"
    assert refresh.figures_change(seen, (STATS, replace(WORKERS, dead=1))) == "counts"
    assert refresh.figures_change(seen, (None, WORKERS)) == "counts"
    older = replace(STATS, oldest_pending_seconds=3.0, finished_last_minute=3)
    assert refresh.figures_change(seen, (older, WORKERS)) == "clock"
    # The database answering, or no longer answering, is news.
    assert refresh.figures_change(seen, "DatabaseUnreachable: down") == "counts"
    assert refresh.figures_change("DatabaseUnreachable: down", seen) == "counts"


def test_a_clock_change_is_refreshed_at_most_every_clock_refresh_seconds() -> None:
    assert refresh.refresh_due("counts", 99.0, 100.0)
    assert not refresh.refresh_due(None, None, 100.0)
    assert refresh.refresh_due("clock", None, 100.0)
    assert not refresh.refresh_due("clock", 95.0, 100.0)
    assert refresh.refresh_due("clock", 100.0 - refresh.CLOCK_REFRESH_SECONDS, 100.0)


def test_writes_of_figures_are_spaced_condition_changes_are_not() -> None:
    assert refresh.write_delay(False, False, None, 10.0) is None  # nothing changed
    assert refresh.write_delay(True, False, None, 10.0) == 0.0  # first write
    assert refresh.write_delay(True, False, 9.6, 10.0, spacing=1.0) == pytest.approx(0.6)
    assert refresh.write_delay(True, True, 9.9, 10.0, spacing=1.0) == 0.0
    assert refresh.write_delay(True, False, 8.0, 10.0, spacing=1.0) == 0.0


def pod(name: str, *, ready: bool, age: float, restarts: int = 0) -> PodView:
    created = NOW - timedelta(seconds=age)
    return PodView(name, ready, restarts, created, False, "Running")


def test_the_status_changes_when_a_start_up_grace_ends() -> None:
    starting = pod("a", ready=False, age=20)
    assert refresh.grace_ends_in([starting], None, NOW) == STARTUP_GRACE_SECONDS - 20
    short_since = NOW - timedelta(seconds=100)
    assert refresh.grace_ends_in([starting], short_since, NOW) == STARTUP_GRACE_SECONDS - 100
    # Ready pods, restarted ones (already failing) and graces long over change nothing.
    settled = [pod("b", ready=True, age=5), pod("c", ready=False, age=5, restarts=1)]
    assert refresh.grace_ends_in(settled, None, NOW) is None
    assert refresh.grace_ends_in([pod("d", ready=False, age=500)], None, NOW) is None


def test_the_next_due_time_is_the_earliest_known_never_in_the_past() -> None:
    assert refresh.next_due(10.0, 70.0) == 70.0
    assert refresh.next_due(10.0, 70.0, None, 15.0, 30.0) == 15.0
    assert refresh.next_due(10.0, 70.0, 2.0) == 10.0  # overdue: now
