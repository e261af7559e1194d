"""When to evaluate a pool's scale: at once on a NOTIFY, a burst folded into a few runs.

The first NOTIFY for a pool starts an evaluation after DEBOUNCE_SECONDS (the rest
of a batch arrives meanwhile). NOTIFYs that arrive while it runs, or within
MIN_SPACING_SECONDS of its start, fold into one more evaluation after that. So a
burst of 10,000 one-by-one enqueues over two seconds costs about eight evaluations
(and queue reads) of the pool, not 10,000, and the first starts within
milliseconds. Each evaluation is handed the moment the oldest NOTIFY it serves
arrived: its queue read must be newer than that, and the reaction time is
measured from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

DEBOUNCE_SECONDS = 0.01
MIN_SPACING_SECONDS = 0.25

log = logging.getLogger(__name__)

Evaluate = Callable[[Hashable, float], Awaitable[None]]


@dataclass
class _Due:
    since: float | None = None
    """Arrival of the oldest NOTIFY no evaluation has served yet."""
    task: asyncio.Task[None] | None = None


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

    def poke(self, key: Hashable, at: float) -> None:
        """Something about ``key``'s queue changed at ``at`` (monotonic): evaluate it soon."""
        due = self._due.setdefault(key, _Due())
        if due.since is None or at < due.since:
            due.since = at
        if due.task is None or due.task.done():
            due.task = asyncio.create_task(self._run(key, due), name=f"scale {key}")

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
        while due.since is not None:
            since, due.since = due.since, None
            started = self._clock()
            try:
                await self._evaluate(key, since)
            except Exception:  # the next NOTIFY or the poll interval tries again
                log.exception("a scaling evaluation failed", extra={"pool": str(key)})
            rest = started + self._spacing - self._clock()
            if rest > 0:
                await asyncio.sleep(rest)
