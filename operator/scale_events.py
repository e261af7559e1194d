"""Scale-change Events, at most one per pool per EVENT_INTERVAL_SECONDS.

A change that comes sooner is kept, and the changes of a burst are told as one
summary once the interval has passed ("0 -> 20 in 3 changes over 8s; last: ...").
Pure: the caller passes ``now`` and posts what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

from workerfleet.durations import format_duration

EVENT_INTERVAL_SECONDS = 10.0


@dataclass
class _Held:
    before: int
    after: int
    changes: int
    first_at: float
    message: str


@dataclass
class ScaleEvents:
    interval_seconds: float = EVENT_INTERVAL_SECONDS
    posted_at: float | None = None
    held: _Held | None = None

    def changed(self, before: int, after: int, message: str, now: float) -> str | None:
        """The Event message to post now for a change, or None (it is kept for later)."""
        if self.held is None and (
            self.posted_at is None or now - self.posted_at >= self.interval_seconds
        ):
            self.posted_at = now
            return message
        if self.held is None:
            self.held = _Held(before, after, 1, now, message)
        else:
            self.held.after = after
            self.held.changes += 1
            self.held.message = message
        return None

    def flush(self, now: float) -> str | None:
        """The summary of the changes kept, once the interval since the last Event passed."""
        held = self.held
        if held is None or (
            self.posted_at is not None and now - self.posted_at < self.interval_seconds
        ):
            return None
        self.held = None
        self.posted_at = now
        if held.changes == 1:
            return held.message
        span = format_duration(max(now - held.first_at, 0.0))
        return (
            f"{held.before} -> {held.after} in {held.changes} changes over {span}; "
            f"last: {held.message}"
        )
