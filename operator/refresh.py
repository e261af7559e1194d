"""When a pool's status is stale, when to write it, when its sync is next due (pure).

A pool's status follows events: a NOTIFY on its queue, a change of its queue
figures seen by its database's stats round, a change of its pods, Deployment or
Service seen by the watch. What still changes with time alone is handled by the
due time each sync leaves in the scheduler (:func:`next_due`): the poll interval
(only while the database's stats round cannot read the queue), the end of a scale-up
period or of the scaleDownDelay window holding a scale-down, a held apply's retry, a
pod's start-up grace, the backstop resync.

* :func:`figures_change`: whether two readings of a pool's rows differ in their
  counts (a status refresh now) or only in what moves with the clock (the oldest
  job's age, the last minute's throughput: refreshed every CLOCK_REFRESH_SECONDS).
* :func:`write_delay`: a changed status is written at once, unless the pool's
  last write is younger than the spacing and no condition changed: then once the
  spacing has passed, folded with whatever else changed meanwhile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from workerfleet.operator.rollup import STARTUP_GRACE_SECONDS
from workerfleet.operator.views import PodView
from workerfleet.worker.models import QueueStats, WorkerStats

CLOCK_REFRESH_SECONDS = 10.0
STATUS_WRITE_SPACING_SECONDS = 1.0

Figures = tuple[QueueStats | None, WorkerStats | None] | str
"""A pool's rows in one stats snapshot, or why the database could not be read."""
Change = Literal["counts", "clock"]


def _counts(stats: QueueStats | None) -> QueueStats | None:
    if stats is None:
        return None
    return dataclasses.replace(stats, oldest_pending_seconds=None, finished_last_minute=0)


def figures_change(before: Figures | None, after: Figures) -> Change | None:
    """How ``after`` differs from ``before`` (None: never read)."""
    if before == after:
        return None
    if before is None or isinstance(before, str) or isinstance(after, str):
        return "counts"
    if before[1] != after[1] or _counts(before[0]) != _counts(after[0]):
        return "counts"
    return "clock"


def refresh_due(change: Change | None, poked_at: float | None, now: float) -> bool:
    """Whether a round that saw ``change`` should refresh the pool's status now."""
    if change == "counts":
        return True
    if change == "clock":
        return poked_at is None or now - poked_at >= CLOCK_REFRESH_SECONDS
    return False


def write_delay(
    changed: bool,
    conditions_changed: bool,
    written_at: float | None,
    now: float,
    spacing: float = STATUS_WRITE_SPACING_SECONDS,
) -> float | None:
    """None: nothing to write; 0: write now; else write after that many seconds."""
    if not changed:
        return None
    if conditions_changed or written_at is None:
        return 0.0
    return max(0.0, written_at + spacing - now)


def grace_ends_in(
    pods: Sequence[PodView], short_since: datetime | None, now: datetime
) -> float | None:
    """Seconds until a start-up grace ends (a starting pod counts as failing, or the pool
    has been short of ready workers long enough to be Degraded): the status changes then
    with no event to say so."""
    starts: Iterable[datetime | None] = (
        p.created_at
        for p in pods
        if not p.ready and not p.deleting and p.restarts == 0 and p.phase != "Failed"
    )
    ends = [
        (start - now).total_seconds() + STARTUP_GRACE_SECONDS
        for start in (*starts, short_since)
        if start is not None
    ]
    future = [end for end in ends if end > 0]
    return min(future) if future else None


def next_due(now: float, backstop: float, *candidates: float | None) -> float:
    """The earliest of ``backstop`` and the candidate times that are known, never before
    ``now``."""
    return max(now, min([backstop, *(when for when in candidates if when is not None)]))
