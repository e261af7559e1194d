"""When to sync a pool: at once on a NOTIFY or a change, a burst folded into a few syncs.

Everything that wants a pool synced pokes it here, naming why: a NOTIFY on its
queue (with the moment it arrived), a change of its queue figures seen by the
database's stats round, a change of its pods or Deployment, its due time in the
scheduler. The first poke starts a sync after DEBOUNCE_SECONDS (the rest of a
batch arrives meanwhile). Pokes that arrive while it runs, or within
MIN_SPACING_SECONDS of its start, fold into one more sync after that, which
serves all of them. So a burst of 10,000 one-by-one enqueues over two seconds
costs about eight syncs (and queue reads) of the pool, not 10,000, and the
first starts within milliseconds. A sync is handed the moment the oldest NOTIFY
it serves arrived: its queue read must be newer than that, and the reaction
time is measured from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

DEBOUNCE_SECONDS = 0.01
MIN_SPACING_SECONDS = 0.25

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """What one sync serves."""

    triggers: frozenset[str]
    """Why it runs: "notify", "queue", "children", "due", ..."""
    since: float | None = None
    """Arrival of the oldest NOTIFY it serves (monotonic), or None when none."""


Evaluate = Callable[[Hashable, Work], Awaitable[None]]


@dataclass
class _Due:
    since: float | None = None
    """Arrival of the oldest NOTIFY no sync has served yet."""
    triggers: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    def take(self) -> Work:
        work = Work(frozenset(self.triggers), self.since)
        self.triggers.clear()
        self.since = None
        return work


class Triggers:
    def __init__(
        self,
        evaluate: Evaluate,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        min_spacing_seconds: float = MIN_SPACING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._evaluate = evaluate
        self._debounce = debounce_seconds
        self._spacing = min_spacing_seconds
        self._clock = clock
        self._due: dict[Hashable, _Due] = {}

    def poke(self, key: Hashable, trigger: str, at: float | None = None) -> None:
        """Sync ``key`` soon because of ``trigger``; ``at``: when the NOTIFY behind it
        arrived (monotonic), if it is one."""
        due = self._due.setdefault(key, _Due())
        due.triggers.add(trigger)
        if at is not None and (due.since is None or at < due.since):
            due.since = at
        if due.task is None or due.task.done():
            due.task = asyncio.create_task(self._run(key, due), name=f"sync {key}")

    def pending(self, key: Hashable) -> bool:
        due = self._due.get(key)
        return due is not None and due.task is not None and not due.task.done()

    def forget(self, key: Hashable) -> None:
        due = self._due.pop(key, None)
        if due is not None and due.task is not None:
            due.task.cancel()

    async def close(self) -> None:
        tasks = [due.task for due in self._due.values() if due.task is not None]
        self._due.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, key: Hashable, due: _Due) -> None:
        await asyncio.sleep(self._debounce)
        while due.triggers:
            work = due.take()
            started = self._clock()
            try:
                await self._evaluate(key, work)
            except Exception:  # the next poke or the pool's due time tries again
                log.exception("a pool sync failed", extra={"pool": str(key)})
            rest = started + self._spacing - self._clock()
            if rest > 0:
                await asyncio.sleep(rest)
